"""Fixed reference tables of the scenario worlds: names, countries, card BINs, user agents.

These are constants, the same in every world; a world's seed decides how they are drawn.
They are written from public knowledge of how API traffic looks (SDK user agents, card
networks' BIN ranges, consumer mail providers), not from any other generator in this
repository.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHEAP_DOMAINS",
    "COMMERCIAL_BINS",
    "COMPANY_SUFFIXES",
    "COMPANY_WORDS",
    "CONSUMER_BINS",
    "CONSUMER_DOMAINS",
    "CONSUMER_DOMAIN_WEIGHTS",
    "COUNTRIES",
    "COUNTRY_TZ",
    "COUNTRY_WEIGHTS",
    "DIURNAL",
    "FIRST_NAMES",
    "LAST_NAMES",
    "MODELS",
    "NEW_MODEL",
    "OFFSETS",
    "TLDS",
    "UA_WEIGHTS",
    "UNIVERSITY_WORDS",
    "USER_AGENTS",
    "VIRTUAL_BINS",
    "ua_index",
]

FIRST_NAMES: tuple[str, ...] = (
    "james", "mary", "john", "linda", "robert", "susan", "michael", "karen", "david", "lisa",
    "william", "nancy", "richard", "betty", "joseph", "sandra", "thomas", "ashley", "daniel",
    "emily", "matthew", "donna", "anthony", "michelle", "mark", "carol", "paul", "amanda",
    "steven", "melissa", "andrew", "deborah", "kevin", "laura", "brian", "rebecca", "george",
    "sharon", "timothy", "cynthia", "jason", "kathleen", "ryan", "amy", "jacob", "anna",
    "gary", "emma", "nicholas", "olivia", "eric", "sofia", "jonathan", "mia", "stephen",
    "hannah", "larry", "julia", "justin", "chloe", "scott", "lucas", "noah", "leon", "ben",
    "felix", "jonas", "lena", "lea", "marie", "lukas", "elias", "finn", "ida",
    "pierre", "camille", "louis", "manon", "hugo", "chiara", "marco", "giulia", "luca",
    "alessandro", "pablo", "lucia", "javier", "carmen", "diego", "valentina", "mateo",
    "rahul", "priya", "amit", "anjali", "arjun", "neha", "vikram", "pooja", "rohan",
    "sneha", "wei", "li", "jing", "hao", "yan", "min", "jun", "hiroshi", "yuki", "haruto",
    "sakura", "kenji", "aiko", "minjun", "jiwoo", "seoyeon", "joao", "ana", "pedro",
    "beatriz", "tiago", "ahmed", "fatima", "omar", "aisha", "yusuf", "mehmet", "elif",
    "emre", "zeynep", "ivan", "olga", "dmitri", "anastasia", "sergei", "piotr", "kasia",
    "tomasz", "agnieszka", "nguyen", "linh", "tuan", "chinedu", "ngozi", "emeka", "amara",
    "kwame", "ama", "sven", "astrid", "lars", "ingrid", "mikko", "aino",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis",
    "rodriguez", "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson",
    "thomas", "taylor", "moore", "jackson", "martin", "lee", "perez", "thompson", "white",
    "harris", "sanchez", "clark", "ramirez", "lewis", "robinson", "walker", "young",
    "allen", "king", "wright", "scott", "torres", "nguyen", "hill", "flores", "green",
    "adams", "nelson", "baker", "hall", "rivera", "campbell", "mitchell", "carter",
    "roberts", "mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner",
    "becker", "schulz", "hoffmann", "dubois", "durand", "leroy", "moreau", "laurent",
    "rossi", "russo", "ferrari", "esposito", "bianchi", "romano", "colombo", "fernandez",
    "gomez", "diaz", "moreno", "alvarez", "romero", "sharma", "patel", "singh", "kumar",
    "gupta", "reddy", "iyer", "nair", "wang", "zhang", "liu", "chen", "yang", "huang",
    "zhao", "wu", "zhou", "sato", "suzuki", "takahashi", "tanaka", "watanabe", "ito",
    "kim", "park", "choi", "jung", "kang", "silva", "santos", "oliveira", "souza", "costa",
    "pereira", "yilmaz", "kaya", "demir", "sahin", "ivanov", "smirnov", "kuznetsov",
    "popov", "kowalski", "nowak", "wisniewski", "tran", "pham", "le", "okafor", "okonkwo",
    "adeyemi", "mensah", "boateng", "andersson", "johansson", "karlsson", "nielsen",
    "hansen", "virtanen", "korhonen", "jansen", "devries", "bakker", "visser",
)  # fmt: skip

# Consumer mail providers and their share of consumer sign-ups. googlemail.com is Gmail
# under another name; the linker's normaliser folds it.
CONSUMER_DOMAINS: tuple[str, ...] = (
    "gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "proton.me",
    "qq.com", "163.com", "mail.ru", "yandex.ru", "gmx.de", "web.de", "naver.com",
    "orange.fr", "libero.it", "googlemail.com", "live.com", "aol.com", "hey.com",
    "fastmail.com", "t-online.de", "free.fr", "seznam.cz", "wp.pl", "rediffmail.com",
    "me.com", "mail.com", "gmx.com", "tutanota.com", "yandex.com", "zohomail.com", "inbox.lv",
    "rambler.ru", "126.com",
)  # fmt: skip
CONSUMER_DOMAIN_WEIGHTS: np.ndarray = np.array(
    [44, 9, 6, 7, 5, 2.5, 3.5, 2.5, 2, 1.5, 1.5, 1.2, 1.4, 1, 0.8, 0.6, 1.5, 1, 0.2,
     0.4, 0.8, 0.6, 0.5, 0.7, 0.6, 0.7, 0.5, 0.4, 0.2, 0.3, 0.2, 0.1, 0.2, 0.6],
    dtype=np.float64,
)  # fmt: skip
CONSUMER_DOMAIN_WEIGHTS /= CONSUMER_DOMAIN_WEIGHTS.sum()

# Small or privacy mail providers that bulk sign-ups favour (and plenty of real people use).
CHEAP_DOMAINS: tuple[str, ...] = (
    "mail.com", "gmx.com", "tutanota.com", "yandex.com", "zohomail.com", "inbox.lv",
    "outlook.com", "hotmail.com", "proton.me", "mail.ru", "rambler.ru", "163.com", "126.com",
)  # fmt: skip

COMPANY_WORDS: tuple[str, ...] = (
    "acme", "nimbus", "vertex", "harbor", "summit", "cobalt", "lumen", "quartz", "meridian",
    "apex", "cedar", "falcon", "granite", "horizon", "ion", "juniper", "kestrel", "lattice",
    "maple", "nova", "orbit", "pioneer", "quill", "redwood", "sierra", "tandem", "umbra",
    "vector", "willow", "zenith", "atlas", "beacon", "cascade", "delta", "ember", "fjord",
    "glacier", "helix", "indigo", "jade", "keystone", "lodestar", "mosaic", "northwind",
    "onyx", "prism", "quasar", "ridge", "solstice", "tidal", "unity", "vantage", "wavelength",
    "xenon", "yonder", "zephyr", "bright", "clear", "deep", "swift",
)  # fmt: skip
COMPANY_SUFFIXES: tuple[str, ...] = (
    "labs", "analytics", "systems", "health", "logistics", "media", "capital", "data",
    "works", "cloud", "robotics", "bio", "energy", "legal", "studio", "retail", "foods",
    "games", "security", "insights", "software", "consulting", "digital", "tech", "ai",
    "partners", "group", "finance", "travel", "learning",
)  # fmt: skip
TLDS: tuple[str, ...] = ("com", "com", "com", "io", "ai", "de", "co.uk", "fr", "net", "co")
UNIVERSITY_WORDS: tuple[str, ...] = (
    "northfield", "lakeshore", "riverside", "eastbrook", "westmont", "highland", "oakridge",
    "stonebridge", "fairview", "brookline", "kingsford", "ashford", "clearwater", "pinecrest",
    "redhill", "silverlake", "crestwood", "greenfield", "bayview", "mountview",
)  # fmt: skip

# ISO 3166-1 alpha-2 codes, their share of innocent sign-ups and a typical UTC offset (h).
COUNTRIES: tuple[str, ...] = (
    "US", "IN", "GB", "DE", "FR", "BR", "JP", "KR", "CA", "AU", "ES", "IT", "NL", "PL",
    "MX", "ID", "TR", "VN", "PH", "NG", "EG", "PK", "BD", "RU", "UA", "SG", "HK", "TW",
    "SE", "CH", "CN", "AR", "CO", "ZA", "TH", "MY", "IL", "AE", "SA", "KE",
)  # fmt: skip
COUNTRY_WEIGHTS: np.ndarray = np.array(
    [22, 10, 5, 5, 4, 5, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 2, 1, 2, 1, 1, 1, 1,
     1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    dtype=np.float64,
)  # fmt: skip
COUNTRY_WEIGHTS /= COUNTRY_WEIGHTS.sum()
COUNTRY_TZ: np.ndarray = np.array(
    [-6, 5, 0, 1, 1, -3, 9, 9, -5, 10, 1, 1, 1, 1, -6, 7, 3, 7, 8, 1, 2, 5, 6, 3, 2, 8, 8,
     8, 1, 1, 8, -3, -5, 2, 7, 8, 2, 4, 3, 3],
    dtype=np.int8,
)  # fmt: skip

# Share of a person's activity per local hour of day (0-23): quiet nights, a working-day
# plateau and an evening bump.
DIURNAL: np.ndarray = np.array(
    [1.2, 0.7, 0.4, 0.3, 0.3, 0.4, 0.8, 1.6, 3.0, 4.6, 5.6, 5.8, 5.0, 5.4, 5.9, 6.0, 5.8,
     5.2, 4.6, 4.4, 4.6, 4.4, 3.4, 2.2],
    dtype=np.float64,
)  # fmt: skip
DIURNAL /= DIURNAL.sum()

# UTC offsets the "+hh:mm" timestamp form is written in.
OFFSETS: tuple[tuple[str, int], ...] = (
    ("+02:00", 7200), ("-05:00", -18000), ("+05:30", 19800), ("+09:00", 32400),
    ("-03:00", -10800), ("+01:00", 3600), ("-08:00", -28800), ("+08:00", 28800),
)  # fmt: skip

MODELS: tuple[str, ...] = ("aurora-2", "aurora-2-mini", "aurora-2.5-pro", "aurora-3")
"""Model names; the last one is released inside the window (see ``release_day``)."""
NEW_MODEL = len(MODELS) - 1


def _bins() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    # A fixed draw (not the world's seed): the card universe is the same in every world.
    rng = np.random.default_rng(20240611)
    prefixes = ["4"] * 10 + ["51", "52", "53", "54", "55", "2221", "2300", "2720"]
    prefixes += ["34", "37", "6011", "65", "35", "62"]
    seen: set[str] = set()

    def draw(count: int, share8: float) -> tuple[str, ...]:
        out: list[str] = []
        while len(out) < count:
            prefix = prefixes[int(rng.integers(len(prefixes)))]
            length = 8 if rng.random() < share8 else 6
            tail = "".join(str(int(d)) for d in rng.integers(0, 10, length - len(prefix)))
            b = prefix + tail
            if b[:6] not in seen:
                seen.add(b[:6])
                out.append(b)
        return tuple(out)

    return draw(420, 0.12), draw(60, 0.2), draw(28, 0.5)


CONSUMER_BINS, COMMERCIAL_BINS, VIRTUAL_BINS = _bins()
"""Card BINs: consumer debit/credit, commercial (corporate) and virtual/prepaid issuers."""


def _user_agents() -> tuple[tuple[str, ...], np.ndarray]:
    agents: list[tuple[str, float]] = []
    for minor in range(30, 62):
        for patch in (0, 1, 2):
            # The newest SDK releases carry most of the traffic.
            agents.append((f"apiclient-python/1.{minor}.{patch}", 0.6 * (1 + (minor - 30) / 6)))
    for minor in range(10, 40):
        agents.append((f"apiclient-node/4.{minor}.0", 0.5 * (1 + (minor - 10) / 8)))
    for minor in range(28, 33):
        for patch in (0, 1, 2, 3):
            agents.append((f"python-requests/2.{minor}.{patch}", 0.6))
    for minor in (25, 26, 27, 28):
        agents.append((f"python-httpx/0.{minor}.0", 0.5))
    for v in ("3.9.1", "3.9.5", "3.10.2"):
        agents.append((f"Python/3.11 aiohttp/{v}", 0.3))
    for minor in (6, 7):
        for patch in range(0, 8):
            agents.append((f"axios/1.{minor}.{patch}", 0.25))
    for minor in range(0, 10):
        agents.append((f"curl/8.{minor}.1", 0.3))
    agents += [("Go-http-client/2.0", 1.5), ("Go-http-client/1.1", 0.8), ("okhttp/4.12.0", 0.8)]
    for minor in (1, 2, 3):
        for patch in range(0, 12, 3):
            agents.append((f"langchain-python/0.{minor}.{patch}", 0.4))
    for patch in range(0, 40, 5):
        agents.append((f"llama-index/0.10.{patch}", 0.2))
    for minor in range(32, 44):
        agents.append((f"PostmanRuntime/7.{minor}.0", 0.2))
    for major in range(118, 128):
        agents.append(
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{major}.0.0.0 Safari/537.36",
                0.5,
            )
        )
        agents.append(
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36",
                0.35,
            )
        )
    for minor in (4, 5, 6):
        agents.append(
            (
                f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_{minor} like Mac OS X) "
                "AppleWebKit/605.1.15 (KHTML, like Gecko) "
                f"Version/17.{minor} Mobile/15E148 Safari/604.1",
                0.4,
            )
        )
    for v in ("1.88.1", "1.89.0", "1.90.2", "1.91.1"):
        agents.append((f"codepilot-vscode/{v}", 0.3))
    for v in ("0.42.3", "0.43.0", "0.44.1"):
        agents.append((f"Cursor/{v}", 0.25))
    for v in ("0.50.1", "0.52.0", "0.55.0"):
        agents.append((f"aider/{v}", 0.1))
    # The popular app's client (the "app" group); its hosted backend sends the same agent.
    agents.append(("Quillmate/4.2.1 (+https://quillmate.app)", 0.0))
    agents.append(("Quillmate-Mobile/4.2.0 (iOS 17.5)", 0.0))
    names = tuple(a for a, _ in agents)
    weights = np.array([w for _, w in agents], dtype=np.float64)
    return names, weights / weights.sum()


USER_AGENTS, UA_WEIGHTS = _user_agents()
"""User agents and how common each is among innocent API users (app agents get 0)."""


def ua_index(prefix: str) -> np.ndarray:
    """Indices of :data:`USER_AGENTS` that start with ``prefix``."""
    return np.array([i for i, a in enumerate(USER_AGENTS) if a.startswith(prefix)], dtype=np.int16)
