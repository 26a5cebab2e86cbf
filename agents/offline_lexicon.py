"""Everyday wording -> the plain words tools and agents are described with.

Customers rarely say "connection" or "quote": they say "keeps cutting out" or "what's the damage".
The offline model reads hints written in plain words ("Use when: internet, connection", "Topics:
quote, pricing"), so before matching it adds to the message the plain words its phrases stand for.
The table is a general one, about ways people speak of services, money, work and products: it names
no agent, tool or graph, and a hint word only counts where a tool or an agent lists it.
"""

from __future__ import annotations

import re

from handoff.agents.offline_cache import TEXTS, memo

_GROUPS: tuple[tuple[str, str], ...] = (
    # a line, a device or a connection that misbehaves
    (r"cut(?:s|ting)?\s+(?:out|off)|drop(?:s|ping|ped)?\s+(?:out|off)|(?:on\s+and\s+off|off\s+and\s+on)|"
     r"disconnect\w*|no\s+(?:signal|internet|connection|service|wi-?fi)|(?:can'?t|cannot|unable\s+to)\s+"
     r"(?:get\s+)?(?:online|connect)|offline|buffer\w*|lag\w*|freez\w*|stutter\w*|"
     r"(?:is|went|gone|goes|been|keeps\s+going)\s+(?:down|dead|out)|dead\b|nothing\s+loads|not\s+loading|"
     r"won'?t\s+load|flak\w*|spotty|unstable|intermittent\w*|broadband|wi-?fi|signal|modem|router|stall\w*|"
     r"hang(?:s|ing)?\b|pages?\s+(?:won'?t|don'?t|do\s+not|never)\s+(?:open|load)|time[sd]?\s?-?out|"
     r"ethernet|speed\w*|bandwidth|online|streaming|netflix|video\s+calls?|light\s+(?:is\s+)?(?:red|orange|blinking)|"
     r"blink\w*",
     "internet connection dropping slow wifi router outage"),
    (r"in\s+my\s+area|near\s+me|my\s+(?:street|neighbou?rhood|town|postcode)|everyone\s+(?:around|near)|"
     r"(?:something|anything)\s+wrong\s+(?:in|with)\s+(?:my|the)\s+(?:area|network)",
     "outage"),
    (r"engineer|technician|send\s+(?:someone|somebody|a\s+tech\w*)|(?:home\s+)?visit|come\s+out|call-?out|"
     r"repair\w*",
     "ticket engineer technician"),
    # money the customer paid or was asked for
    (r"bill(?:ed|ing|s)?\b|overcharg\w*|charg\w*|fees?\b|statement|invoice\w*|receipt|debit\w*|paid|"
     r"payment\w*|pay\b|direct\s+debit|went\s+up|price\s+(?:went|has\s+gone)\s+up|twice|double",
     "charged bill billing invoice payment money"),
    (r"money\s+back|reimburs\w*|refund\w*|revers\w*|credit\s+(?:me|it|my|back)|compensat\w*|pay\s+(?:me\s+)?back|"
     r"get\s+(?:\w+\s+){0,2}back\s+for",
     "refund money back"),
    # what a purchase would cost, and closing it
    (r"\bcosts?\b|costing|how\s+much|price\w*|pricing|quot\w*|the\s+damage|set\s+(?:us|me)\s+back|total\b|"
     r"a\s+number\b|figures?\b|ballpark|estimate|per\s+(?:seat|user|head|month|year)|expensive|cheap\w*|"
     r"discount\w*|afford\w*|\brates?\b|run\s+(?:us|me)\b|pay\s+for|(?:kind|sort|amount)\s+of\s+money|"
     r"how\s+much\s+money|money\s+(?:are\s+we|would|will)|spend",
     "price pricing cost quote"),
    (r"paperwork|contract|sign\s+(?:up|the|it|on)|order\s+form|purchase\s+order|ready\s+to\s+(?:buy|sign|order)|"
     r"place\s+(?:the|an)\s+order|let'?s\s+(?:sign|buy)",
     "order contract order form"),
    # a lead describing what it is after (asking what it costs is interest too)
    (r"evaluat\w*|looking\s+(?:at|for|to|into)|shopping|in\s+the\s+market|replac\w*|switch\w*|swap\w*|"
     r"mov(?:e|ing)\s+(?:off|away|from)|need\s+(?:a|an)\s+(?:new\s+)?(?:crm|tool|system|platform)|considering|"
     r"interested|want\s+(?:a|to\s+buy)|buy\w*|purchas\w*|compar\w*|vendors?|browsing|explor\w*|trial|"
     r"(?:need|want|after|require|getting)\s+(?:a|an|some)\s+(?:\w+\s+)?(?:crm|tool|system|platform|software|"
     r"solution)|outgr[eo]w\w*|not\s+cutting\s+it|ready\s+to\s+move|"
     r"how\s+much|pricing|price\w*|\bcosts?\b|quote",
     "evaluating looking buy interested"),
    # research, writing, editing
    (r"research\w*|look\s+(?:into|up)|find\s+(?:out|me|us)|dig\s+(?:up|into)|gather\w*|sources?|facts?|"
     r"background|what\s+(?:do\s+we\s+know|is\s+known|does\s+the\s+research\s+say)|what'?s\s+out\s+there|"
     r"information|\binfo\b|learn\s+about|read\s+up|evidence|studies|statistics|stats",
     "research sources facts background"),
    (r"\bwrit\w*|wrote|draft\w*|article|blog|\bpost\b|piece\b|newsletter|essay|story|write-?up|copy\s+for|"
     r"put\s+(?:it|that|this|those|them|something)?\s*together|turn\s+(?:it|that|this|those|them)\s+into|"
     r"make\s+(?:it|that|this|those|them)\s+into|compos\w*|words?\s+on|text\s+for|"
     r"summar\w+\s+(?:it|that|this)\s+(?:for|into)",
     "write draft"),
    (r"review\w*|check\s+(?:it|this|that|the\s+draft|the\s+piece)(?:\s+over)?|look\s+(?:it|this|that)\s+over|"
     r"look\s+over|proof-?read\w*|\bproof\b|polish\w*|tidy\w*|\bedit\b|editing|editor|copy-?edit\w*|"
     r"(?:final|last)\s+(?:check|look|pass|read)|once-?over|second\s+(?:pair\s+of\s+)?eyes|goes\s+out|"
     r"house\s+style|style\s+guide",
     "review proofread editor"),
    (r"approv\w*|sign\s+(?:it\s+)?off|sign-?off|publish\w*|good\s+to\s+go|ready\s+to\s+(?:go|publish)|"
     r"go\s+live|green-?light|ok\s+to\s+run|let'?s\s+run\s+it",
     "approve publish"),
    (r"revis\w*|rewrit\w*|rework\w*|re-?do\b|trim\w*|shorten\w*|cut\s+(?:it|down|back|words)|too\s+long|"
     r"another\s+(?:pass|go|round|version)|tweak\w*|fix\s+(?:it|that|those|the\s+\w+)|fixes|"
     r"change\s+(?:it|that|those)|send\s+(?:it\s+)?back|back\s+to\s+the\s+writer|apply\s+(?:the|those|his|her)\s+"
     r"(?:notes|changes|comments)|address\s+(?:the|those)\s+(?:notes|issues|comments)|what\s+the\s+editor\s+found",
     "revise revision rewrite fix"),
    # engineering: what is wrong, what to do, doing it
    (r"slow\w*|sluggish|crawl\w*|takes?\s+(?:ages|forever|long)|taking\s+(?:ages|forever)|latenc\w*|"
     r"lag\w*|time[sd]?\s?-?out|timing\s+out|errors?\b|fail\w*|spik\w*|kicked\s+out|broken|degrad\w*|p9\d|"
     r"health\w*|metrics?|numbers|dashboard|performance|uptime|\bok\b\?|is\s+\w+\s+(?:ok|okay|fine|up)\b",
     "slow latency errors timeouts metrics"),
    # a symptom reported is a request to find its cause
    (r"slow\w*|sluggish|crawl\w*|takes?\s+(?:ages|forever|long)|taking\s+(?:ages|forever)|latenc\w*|"
     r"time[sd]?\s?-?out|timing\s+out|errors?\b|fail\w*|spik\w*|kicked\s+out|broken|degrad\w*|"
     r"through\s+the\s+roof|(?:went|gone|shot)\s+up|doubled|tripled",
     "why cause"),
    (r"block\w*|prevent\w*|stopp\w*\s+(?:us|it)|in\s+the\s+way|freez(?:e|es)\b|frozen|restrict\w*|"
     r"not\s+allowed|(?:what|which)\s+(?:limits|rules)|hold(?:ing)?\s+(?:us|it)\s+(?:up|back)|blocker\w*",
     "constraint constraints freeze blocked"),
    (r"\bwhy\b|what'?s\s+(?:going\s+on|wrong|happening|causing)|root\s+cause|caus\w*|investigat\w*|"
     r"look\s+into|dig\s+into|figure\s+out|find\s+out|analy[sz]\w*|diagnos\w*|debug\w*|get\s+to\s+the\s+bottom",
     "analyse why cause investigate"),
    (r"\bfix\w*|solv\w*|solution|remed\w*|suggest\w*|propos\w*|what\s+(?:should|can|could|do)\s+we\s+do|"
     r"how\s+(?:do|can|could|should|would)\s+we|plan\b|design\w*|come\s+up\s+with|draw\s+up|approach|"
     r"mitigat\w*|resolv\w*|address\s+(?:it|this|that)|sort\s+(?:it|this)\s+out",
     "fix solution design plan"),
    (r"instead|rethink\w*|re-?think|reconsider\w*|plan\s+b\b|drawing\s+board|different\s+(?:approach|way|plan|"
     r"option|solution|idea|route)|another\s+(?:approach|way|plan|option|solution|idea|route)|"
     r"other\s+(?:options?|ideas?|approach(?:es)?|ways?|plans?|solutions?|routes?)|alternativ\w*|won'?t\s+work|"
     r"doesn'?t\s+work|no-?go|dead\s+end|"
     r"not\s+(?:possible|feasible|going\s+to\s+work|an\s+option)|can'?t\s+(?:do|build|ship|apply)\s+(?:that|it)|"
     r"something\s+else|else\s+(?:can|could)\s+we|workaround|redesign\w*|back\s+to\s+(?:design|the\s+designer)",
     "alternative options design redesign"),
    (r"go\s+ahead|go\s+for\s+it|do\s+it\b|make\s+it\s+happen|ship\s+it|build\s+it|push\s+it|roll\s+(?:it\s+)?out|"
     r"rollout|deploy\w*|implement\w*|\bapply\b|apply\s+it|carry\s+(?:it\s+)?out|execut\w*|"
     r"(?:in|into|to)\s+production|go\s+live|let'?s\s+(?:do|go|ship|build)|proceed|launch\w*|"
     r"sounds\s+good|green-?light|get\s+it\s+done|make\s+the\s+change|put\s+it\s+(?:live|in)|"
     r"(?:build|ship|deploy|apply|implement|do|go\s+with|use|pick|take|run\s+with)\s+(?:the\s+)?"
     r"(?:first|second|third|last|top|best|recommended)\s+(?:one|option|plan)",
     "implement deploy apply go ahead rollout"),
    # a product and what it can do
    (r"feature\w*|support(?:s|ed)?\b|integrat\w*|hook\s+(?:in|into|up)|connects?\s+(?:to|with)|plays?\s+nice\w*|"
     r"work\s+with|\bsso\b|single\s+sign|okta|saml|entra|active\s+directory|identity\s+provider|import\w*|"
     r"export\w*|pull\s+(?:data|in|our)|migrat\w*|csv|spreadsheet\w*|excel|\bapi\b|webhook\w*|audit\w*|"
     r"\btrail\b|complian\w*|security|secure|gdpr|residen\w*|data\s+in\s+the\s+(?:eu|us)|(?:eu|europe)\b|"
     r"forecast\w*|capabilit\w*|functionality",
     "feature integration import api audit compliance security sso residency forecast"),
    (r"which\s+(?:plan|tier|package|edition|option)|what\s+(?:plan|tier|package|edition)|recommend\w*|"
     r"(?:difference|differences)\s+between|right\s+(?:plan|tier|fit)|best\s+(?:plan|tier|fit)|fits?\s+us|"
     r"suit\w*\s+us",
     "which plan recommend fits compare plan"),
    # the desk itself
    (r"\bhello\b|\bhi\b|\bhey\b|good\s+(?:morning|afternoon|evening)|opening\s+(?:hours|times)|"
     r"(?:are\s+you|you\s+are|lines?\s+are|is\s+it|shop|store|office)\s+open|open\s+(?:on|at|until|till|today|"
     r"tomorrow|now|on\s+\w+days?)|when\s+(?:do|are)\s+you\s+(?:open|close)|hours|closing\s+time|"
     r"postal\s+address|your\s+address|head\s+office|where\s+are\s+you|phone\s+lines?|contact\s+details",
     "hello hours address general"),
    (r"account|acc\s*#|customer\s+(?:number|id)|my\s+number\s+is",
     "account"),
    (r"post\s?code|zip(?:\s?code)?|postal\s+code|verify|verification|confirm\s+(?:it'?s\s+)?me|identity",
     "postcode verify"),
)
# Lower-case patterns searched in a lower-cased text: the same groups as ``re.IGNORECASE`` finds, at a
# third of its cost (tests/test_offline_speed_invariants.py), and every message is searched once per group.
_COMPILED = tuple((re.compile(pattern), tuple(words.split())) for pattern, words in _GROUPS)


def groups(text: str) -> list[tuple[str, ...]]:
    """The plain words of each phrase group ``text`` matches, one tuple per group."""
    return list(matched_groups(text))


def plain_words(text: str) -> list[str]:
    """The plain words ``text``'s phrases stand for, in table order, without repeats."""
    return list(_plain_words(text))


@memo(TEXTS)
def expanded(text: str) -> str:
    """``text`` followed by the plain words its phrases stand for."""
    words = _plain_words(text)
    return f"{text} {' '.join(words)}" if words else text


# One search per group is the cost of reading a message (a combined pattern would miss groups whose
# phrases overlap another's match), so each text is searched once and its groups kept.
@memo(TEXTS)
def matched_groups(text: str) -> tuple[tuple[str, ...], ...]:
    """``groups(text)``, cached: the word tuples of the matching groups, in table order."""
    lowered = text.lower()
    return tuple(words for pattern, words in _COMPILED if pattern.search(lowered))


@memo(TEXTS)
def _plain_words(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(w for words in matched_groups(text) for w in words))
