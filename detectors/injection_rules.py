"""The rule signals of :mod:`detectors.injection`, and the feature rows built from them.

Each signal in ``SIGNALS`` is the noisy-or of the weights of its matching patterns,
read over several views of the input: as written, and with common obfuscations
undone (leetspeak, letters spelled with separators, reversed or ROT13 text, quoted
fragments joined, base64 or hex payloads decoded). The detector reports the signals
that reach ``FIRES_AT``; ``scripts/train_injection_head.py`` builds its rows with the
same :func:`rule_features`, :func:`length_feature` and :func:`feature_names`, so the
head is trained on the columns the detector computes. Regexes and numpy, no model.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import math
import re
from collections.abc import Sequence
from itertools import islice

import numpy as np

from detectors.regex_literals import needed_literals

__all__ = ["FIRES_AT", "SIGNALS", "feature_names", "length_feature", "rule_features"]

FIRES_AT = 0.5  # a signal is reported when its feature reaches this
MAX_RULE_CHARS = 20_000  # rules read the head and tail of very long inputs

_OVERRIDE_VERB = r"\b(?:ignore|disregard|forget|override|bypass|abandon|discard|skip|neglect)"
_EARLIER = "previous|prior|preceding|above|earlier|initial|original|former|your|system|developer"
_RULE_NOUN = (
    r"instructions?|prompts?|directives?|guidelines|rules|programming|restrictions|constraints"
    r"|polic(?:y|ies)"
)
_GAP = r"\b[^.!?\n]{0,40}?\b(?:"
_OVERRIDE = _OVERRIDE_VERB + _GAP + _EARLIER + r")\b[^.!?\n]{0,30}?\b(?:" + _RULE_NOUN + r")\b"
# "ignore any typos in my previous messages" is benign: weak qualifiers and nouns score low
_WEAK_OVERRIDE = (
    _OVERRIDE_VERB + _GAP + "old|existing|all|any|every|" + _EARLIER + r")\b[^.!?\n]{0,30}?"
    r"\b(?:training|commands?|context|messages?|identity|" + _RULE_NOUN + r")\b"
)
_LIMITS = (
    r"(?:restrictions|limitations|limits|filters?|filtering|censorship|guidelines|rules"
    r"|boundaries|ethics|morals|morality|principles|polic(?:y|ies)|safeguards|constraints)"
)
_BAD_WORDS = "illegal|unethical|immoral|harmful|dangerous|offensive|inappropriate|explicit"
_BAD = f"(?:{_BAD_WORDS})"

# name -> (weight, pattern): a feature is the noisy-or of the weights of its matching patterns.
# Patterns are lower case and run on the lower-cased text (much faster than re.I).
_RULE_TABLE: dict[str, list[tuple[float, str]]] = {
    "instruction_override": [
        (0.9, _OVERRIDE),
        (0.4, _WEAK_OVERRIDE),
        (0.7, _OVERRIDE_VERB + r"\s+(?:all|any|every)\s+(?:of\s+)?(?:the\s+|your\s+|its\s+)?(?:"
              + _RULE_NOUN + r")\b"),
        (0.6, r"\b(?:new|updated|real|actual)\s+(?:instructions|directives|system prompt)"
              r"\s*(?::|are\b)"),
        (0.8, r"\b(?:do not|don'?t|stop|no longer)\s+(?:follow|obey)(?:ing)?\s+(?:your|the|any)\s+"
              r"(?:previous |prior |original |system |old )?"
              r"(?:instructions|rules|guidelines|programming)"),
        (0.8, r"\binstead of (?:following|obeying) (?:your|the) (?:instructions|rules|guidelines)"),
        (0.8, r"\b(?:forget|ignore|disregard)\s+(?:everything|all|the)\s+(?:from before|above"
              r"|before|previous(?:ly)?|you (?:were|have been) told|i (?:said|told you))"),
        (0.5, r"\b(?:(?:admin(?:istrator)?|developer|root|sudo)\s+(?:override|access|mode)"
              r"|(?:maintenance|debug(?:ging)?)\s+mode)\b"),
        # paraphrased: the setup is declared outdated, lifted or set aside
        (0.8, r"\byour\s+(?:setup|initial|original|earlier|configured|starting|old)\s+"
              r"(?:text|guidance|guidelines|instructions|rules|prompt|configuration)\b"
              r"[^.!?\n]{0,30}\b(?:is|are|was|were)\s+(?:outdated|obsolete|(?:only\s+)?a draft"
              r"|wrong|void|no longer valid|replaced|superseded)"),
        (0.8, r"\b(?:set|put)\s+aside\s+(?:the\s+|your\s+)?(?:guidance|guidelines|instructions"
              r"|rules|policies)\b"),
        (0.8, r"\b(?:your|that|those|these|any)\s+(?:restrictions?|rules|limits|polic(?:y|ies)"
              r"|constraints|guidelines)\s+(?:has|have)\s+been\s+(?:lifted|removed|disabled"
              r"|waived|suspended)"),
        (0.8, r"\b(?:instructions|rules|guidelines|policies|restrictions)\b[^.!?\n]{0,40}"
              r"\bno longer (?:apply|applies|valid|matter)"),
        (0.6, r"\b(?:nobody|no one) (?:configured|instructed|programmed) you\b"),
        # indirect: text inside a document that addresses the model reading it
        (0.8, r"\b(?:note|notes|instruction|hidden text|reminder)\s+(?:to|for)\s+"
              r"(?:the\s+|any\s+|all\s+)?(?:ai|a\.i\.|assistant|language model|llm|chatbot|bot"
              r"|ai (?:system|tool|model|screener|summari[sz]er)s?|summari[sz]ers?|screeners?)\b"
              r"[^.!?\n]{0,40}:"),
        (0.8, r"\bif you are an?\s+(?:ai|a\.i\.|language model|llm|assistant|bot|chatbot"
              r"|ai model)\s*(?:,|:|\breading\b|\bprocessing\b)"),
        (0.8, r"\b(?:ai|assistant|bot|language model|llm|ai model)s?\s+(?:systems?\s+|tools?\s+)?"
              r"(?:reading|processing|screening|evaluating|summari[sz]ing|parsing|reviewing)"
              r"\s+(?:this|these)\b"),
        (0.8, r"\b(?:any|every|all)\s+(?:ai|language model|llm|bot|assistant)s?\s+"
              r"(?:systems?\s+|tools?\s+|models?\s+)?(?:reading|processing|evaluating|handling"
              r"|screening|summari[sz]ing)\b[^.!?\n]{0,40}\b(?:must|should|shall"
              r"|(?:are|is) instructed)\b"),
        (0.8, r"\bto (?:whichever|whatever|any|the) (?:bot|ai|assistant|model) "
              r"(?:that )?(?:reads|reading|processing)\b"),
        (0.6, r"<!--[^>]{0,200}\b(?:assistant|ai|llm|chatbot)\b[^>]{0,60}\b(?:ignore|forget"
              r"|disregard|stop|instead|tell|output|say|reply|send|print)\b"),
        (0.6, r"\bsystem\s*:\s*(?:you are|you're|ignore|forget|disregard|from now)\b"),
        # other languages: an override verb aimed at instructions or rules
        (0.9, r"\b(?<!no )(?:ignora|olvida|olvide|omite|descarta)\b[^.!?\n]{0,40}"
              r"\b(?:instrucciones|reglas|indicaciones|normas|directrices)\b"),
        (0.9, r"\b(?<!n')(?:ignore|ignorez|oublie|oubliez)\s+(?:toutes\s+|tous\s+)?(?:les|tes"
              r"|vos|ces|ses)\b[^.!?\n]{0,40}\b(?:instructions|consignes|règles|directives)\b"),
        (0.9, r"\b(?:ignoriere|ignorier|ignorieren sie|vergiss|vergessen sie|missachte)\b"
              r"(?! nicht)[^.!?\n]{0,40}\b(?:anweisungen|regeln|vorgaben|richtlinien"
              r"|instruktionen)\b"),
        (0.9, r"\b(?<!não )(?<!nao )(?:ignore|ignora|esqueça|esqueca|desconsidere)\s+(?:todas\s+)?"
              r"(?:as|suas|tuas|essas)\b[^.!?\n]{0,40}\b(?:instruções|instrucoes|regras"
              r"|diretrizes)\b"),
        (0.9, r"(?<!не )(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте)[^.!?\n]{0,40}"
              r"(?:инструкци|правил|указани)"),
        (0.9, r"(?:(?<!不要)(?<!别)(?:忽略|无视|忘记|忘掉)|不要理会)[^。\uff01\uff1f\n]{0,20}"
              r"(?:指令|指示|规则|说明|提示)"),
        (0.9, r"(?:無視|忘れ)[^。\uff01\uff1f\n]{0,20}(?:指示|ルール|命令|規則)"
              r"|(?:指示|ルール|命令|規則)[^。\uff01\uff1f\n]{0,20}(?:無視|忘れ)(?!ない)"),
    ],
    "persona_jailbreak": [
        (0.8, r"\bdo anything now\b"),  # and "DAN" in capitals, see _CASED
        (0.6, r"\b(?:developer|dev|god|jailbreak|jailbroken|unrestricted|evil|unfiltered)"
              r"\s+mode\b"),
        (0.6, r"\bjailbr(?:eak|oken)\w*"),
        (0.3, r"\b(?:stay in|break(?:ing)?) character\b"),
        (0.4, r"\b(?:enable[sd]?|activate[sd]?|enter(?:ing)?|stay in|while in|switch to)\s+"
              r"(?:\w+\s+){0,3}mode\b"),
        (0.3, r"\b(?:two|2)\s+(?:different\s+|separate\s+)?(?:personalities|entities|personas)\b"),
    ],
    "rule_removal": [
        (0.8, r"\b(?:not|no longer|never)\s+(?:be\s+)?(?:bound|restricted|constrained|limited"
              r"|restrained|held back|censored|filtered)"
              r"\s+by\b[^.!?\n]{0,40}" + _LIMITS),
        (0.8, r"\b(?:free|freed|liberated|released)\s+from\s+(?:the\s+|all\s+|any\s+)?"
              r"(?:typical\s+|usual\s+)?(?:confines|shackles|restrictions|limitations|rules)"),
        (0.8, r"\b(?:has|have|with|without|no|zero)\s+(?:any\s+)?(?:ethical|moral)\s+(?:guidelines"
              r"|principles|restrictions|boundaries|code|compass|limits|considerations|filter)"),
        (0.7, r"\b(?:doesn'?t|does not|don'?t|do not|never|won'?t|will not)\s+(?:have to\s+)?"
              r"(?:care about|follow|abide by|adhere to|comply with|respect)\b[^.!?\n]{0,30}"
              + _LIMITS),
        (0.5, r"\b(?:openai|content|usage|safety)(?:'s)?\s+(?:content\s+)?polic(?:y|ies)"),
        (0.6, r"\b(?:unfiltered|uncensored|amoral)\b"),
        (0.4, r"\b(?:no|with no|without)\s+(?:restrictions|limitations|filters|censorship)\b"),
        (0.5, r"\b(?:doesn'?t|does not|nor does it)\s+have\s+(?:a\s+|any\s+)?(?:content\s+)?"
              r"(?:filters?|filtering|censorship|restrictions|limitations)\b"),
        (0.7, r"\b(?:sin (?:ninguna )?restricci|sans (?:aucune )?(?:restriction|limite)"
              r"|ohne (?:jegliche |irgendwelche )?(?:einschränkung|beschränkung|regeln)"
              r"|sem (?:nenhuma )?restri)"),
        (0.7, r"(?:без ограничени|没有任何限制|不受任何限制|制限なし|制限のない)"),
    ],
    "system_prompt_exfiltration": [
        (0.7, r"\b(?:your\s+(?:system|initial|original|hidden|secret|starting|internal|pre-?)"
              r"\s*(?:prompt|instructions?|message|configuration|directives?|rules)"
              r"|the\s+system\s+(?:prompt|message|instructions|configuration))\b"),
        (0.6, r"\b(?:system[ _]?prompt|initiali[sz]ation string|pre-?prompt)\b"),
        (0.7, r"\b(?:display|show|print|output|reveal|dump)\s+(?:the\s+|your\s+)?(?:system|initial"
              r"|internal|hidden)\s+(?:configuration|config|settings|prompt|instructions)"),
        (0.8, r"\b(?:repeat|print|output|show|display|reveal|tell me|write out|echo|recite|copy"
              r"|give me|share|dump|spell out)\b[^.!?\n]{0,40}"
              r"(?:\b(?:text|words|content|instructions|prompt|messages?)\s+(?:above|before)\b"
              r"|\babove\s+(?:text|content|instructions|prompt)\b"
              r"|\byour\s+(?:instructions|prompt|rules|directives|guidelines|configuration)\b"
              r"|\beverything\s+(?:above|before|so far)\b"
              r"|\b(?:this|the)\s+(?:entire|whole)\s+conversation\b)"),
        (0.8, r"\bwhat\s+(?:are|were|is)\s+(?:your\s+(?:\w+\s+)?(?:instructions|prompt|rules"
              r"|directives|guidelines|orders)"
              r"|the\s+(?:system|initial|original|hidden|secret)\s+(?:prompt|instructions))"),
        (0.6, r"\b(?:(?:you were|you've been|you have been|were you)\s+(?:initially\s+)?"
              r"(?:told|instructed|given|programmed)"
              r"|what\s+(?:are|were)\s+you\s+(?:not\s+)?(?:supposed|allowed|told|instructed)\s+to)\b"),
        (0.7, r"\b(?:i was instructed to|my instructions are|the system prompt is)\b"),
        (0.8, r"(?:prompt (?:système|systeme|de sistema|do sistema)|systemprompt"
              r"|системн\w* (?:промпт|подсказк|инструкци)|系统提示|システムプロンプト"
              r"|instruções ocultas|instrucciones ocultas|versteckten anweisungen"
              r"|consignes cachées)"),
    ],
    "encoded_payload": [
        (0.3, r"\b(?:rot-?13|base-?64|hex(?:adecimal)?|caesar cipher|morse code|leetspeak|l33t)\b"),
        (1.0, "[\U000e0000-\U000e007f]"),  # invisible Unicode tag characters
        # two zero-width characters in a row, or one bidi override (one class first: fast)
        (0.6, "[\u200b\u200c\u2060\u2062-\u2064\ufeff\u202a-\u202e\u2066-\u2069]"
              "(?:(?<=[\u202a-\u202e\u2066-\u2069])|[\u200b\u200c\u2060\u2062-\u2064\ufeff])"),
    ],
    "refusal_suppression": [
        (0.8, r"\b(?:never|do not|don'?t|must not|will not|won'?t|cannot|can'?t|not allowed to)"
              r"\s+(?:ever\s+)?(?:refuse|decline|deny|reject)\b"),
        (0.7, r"\bwithout\s+(?:any\s+)?(?:warnings?|disclaimers?|caveats?|censorship|moralis\w*"
              r"|moraliz\w*|lectur\w*|apolog\w*)"),
        (0.8, r"\b(?:never|not allowed to|must not|do not|don'?t)\s+(?:say|tell me|respond with"
              r"|reply with|mention|state|remind)\b[^.\n]{0,40}"
              r"(?:sorry|can'?t|cannot|unable|an ai\b|language model|not able|"
              + _BAD_WORDS + ")"),
        (0.6, r"\b(?:don'?t|do not|never)\s+"
              r"(?:apologi[sz]e|add\s+(?:any\s+)?(?:warnings|disclaimers))"),
        (0.7, r"\bregardless of\s+(?:how\s+|its\s+|the\s+|any\s+)?(?:legal(?:ity)?|illegal"
              r"|ethic(?:s|al)|moral(?:ity|s)?|immoral|harmful|dangerous|offensive|inappropriate)"),
        (0.7, r"\beven if (?:it(?:'s| is)|they(?:'re| are)|the (?:request|question) is)\s+" + _BAD),
    ],
}  # fmt: skip


def _compile(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A leading \\b is checked by hand: it stops the engine from skipping ahead in C."""
    if pattern != pattern.lower():
        raise ValueError(f"injection rule must be lower case: {pattern!r}")
    bounded = pattern.startswith(r"\b")
    return re.compile(pattern[2:] if bounded else pattern), bounded


# (regex, leading \b, weight, literals one of which every match holds, or None)
_Rule = tuple[re.Pattern[str], bool, float, frozenset[str] | None]


def _rule(weight: float, pattern: str) -> _Rule:
    return (*_compile(pattern), weight, needed_literals(pattern))


_RULES = {name: [_rule(w, p) for w, p in rules] for name, rules in _RULE_TABLE.items()}
# Every rule once, as (signal column, regex, leading \b, weight), in table order; the rules
# each literal can let through, and those without literals, which always run.
_FLAT = [(j, rx, b, w) for j, rules in enumerate(_RULES.values()) for rx, b, w, _ in rules]
_LITS = [lits for rules in _RULES.values() for *_, lits in rules]
_BY_LITERAL: dict[str, list[int]] = {}
for _k, _lits in enumerate(_LITS):
    for _lit in _lits or ():
        _BY_LITERAL.setdefault(_lit, []).append(_k)
_ALWAYS = frozenset(k for k, lits in enumerate(_LITS) if lits is None)
_LITERALS = sorted(_BY_LITERAL)  # each looked for once per reading
_CASED = {"persona_jailbreak": [(re.compile(r"\bDAN\b"), 0.8)]}  # DAN, not the name Dan
SIGNALS = tuple(_RULES)
_PERSONA_COL, _REMOVAL = SIGNALS.index("persona_jailbreak"), SIGNALS.index("rule_removal")
_PERSONA = _compile(
    r"\b(?:act(?:ing)? as|pretend(?:ing)? to be|role-?play|you are now|you're now|from now on"
    r"|stay in character|simulate|persona|alter ego|character|you are going to be)\b"
)

_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ ]?){16,}\b")
_LONG_RUN = re.compile(r"[A-Za-z0-9+/]{24}")
_HEX_HINT = re.compile(r"[0-9a-fA-F]{2} [0-9a-fA-F]{2} [0-9a-fA-F]{2} [0-9a-fA-F]{2} ")


def _decoded_blobs(text: str) -> list[str]:
    """The readable texts that base64 or hex runs decode to: payloads hidden from rules."""
    if not _LONG_RUN.search(text) and not _HEX_HINT.search(text):
        return []  # no run long enough for either
    found: list[str | None] = []
    for m in islice(_BASE64.finditer(text), 20):
        raw = m.group()
        try:
            data = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        found.append(_readable(data))
    for m in islice(_HEX.finditer(text), 20):
        found.append(_readable(bytes.fromhex(m.group().replace(" ", ""))))
    return [t for t in found if t is not None]


_LEET = str.maketrans("0134579@$", "oieastgas")
_LEET_WORD = re.compile(r"[a-z]+[0-9]+[a-z0-9]*|[0-9]+[a-z]+[a-z0-9]*")
# "I-g-n-o-r-e", "p.r.i.n.t": three or more single letters joined by - . or _
_SPELLED = re.compile(r"\b(?:[a-z][-._]){2,}[a-z]\b")
_QUOTED = re.compile(r"'([^'\n]{1,80})'|\"([^\"\n]{1,80})\"")
_REVERSE_CUE = re.compile(
    r"\b(?:backwards?|reversed?|in reverse|mirror(?:ed)?|rückwärts|al revés)\b"
)
_ROT_CUE = re.compile(r"\b(?:rot-?13|caesar|rotate (?:each|every) letter)\b")
_DIGIT = re.compile(r"[0-9]")  # a leetspeak word has one: most texts need no findall
# literals the cues cannot match without, looked for before the regexes run
_REVERSE_HINTS = tuple(needed_literals(_REVERSE_CUE.pattern) or ("",))
_ROT_HINTS = tuple(needed_literals(_ROT_CUE.pattern) or ("",))


def _views(text: str, blobs: Sequence[str] = ()) -> list[str]:
    """Lower-cased readings of ``text`` for the rules: as written, then what it says once
    common obfuscations are undone (leetspeak, letters spelled with separators, reversed
    or ROT13 text when the input asks for it, quoted fragments joined) and ``blobs``,
    the base64 or hex payloads it holds, decoded."""
    low = text.lower()
    out = [low]
    if _DIGIT.search(low) and len(_LEET_WORD.findall(low)) >= 3:
        out.append(low.translate(_LEET))
    if _SPELLED.search(low):
        out.append(_SPELLED.sub(lambda m: re.sub(r"[-._]", "", m.group()), low))
    if any(h in low for h in _REVERSE_HINTS) and _REVERSE_CUE.search(low):
        out.append(low[::-1])
    if any(h in low for h in _ROT_HINTS) and _ROT_CUE.search(low):
        out.append(codecs.encode(low, "rot13"))
    parts = [a or b for a, b in _QUOTED.findall(low)]
    if len(parts) >= 2:
        out += ["".join(parts), " ".join(parts)]
    out += [blob.lower() for blob in blobs]
    return out


def _readable(data: bytes) -> str | None:
    """``data`` as text when it reads like words (a hidden payload), else None."""
    if len(data) < 12:
        return None
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(c.isalpha() or c == " " for c in decoded)
    return decoded if " " in decoded and letters / len(decoded) > 0.8 else None


def _clip(text: str) -> str:
    if len(text) <= MAX_RULE_CHARS:
        return text
    half = MAX_RULE_CHARS // 2
    return text[:half] + "\n" + text[-half:]


def _found(rx: re.Pattern[str], bounded: bool, text: str) -> bool:
    m = rx.search(text)
    while (
        m
        and bounded
        and m.start()
        and (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_")
    ):
        m = rx.search(text, m.start() + 1)
    return m is not None


def _strengths(reading: str) -> list[float]:
    """Per signal, the noisy-or of the weights of its patterns found in one reading. Only
    rules one of whose needed literals occurs are searched: on most inputs, a handful.
    Rules go in table order, so each product is the same float as rule by rule."""
    rules = set(_ALWAYS)
    for lit in _LITERALS:
        if lit in reading:
            rules.update(_BY_LITERAL[lit])
    miss = [1.0] * len(SIGNALS)
    for k in sorted(rules):
        j, rx, bounded, weight = _FLAT[k]
        if _found(rx, bounded, reading):
            miss[j] *= 1.0 - weight
    return [1.0 - m for m in miss]


def rule_features(texts: Sequence[str]) -> np.ndarray:
    """One row per text, one column per name in SIGNALS, each in [0, 1]."""
    out = np.zeros((len(texts), len(SIGNALS)), dtype=np.float64)
    for i, original in enumerate(texts):
        original = _clip(original)
        blobs = _decoded_blobs(original)
        readings = _views(original, blobs)
        text = readings[0]
        strengths = [_strengths(r) for r in readings]
        for j, name in enumerate(SIGNALS):
            miss = 1.0 - max(s[j] for s in strengths)
            for rx, weight in _CASED.get(name, ()):
                if rx.search(original):
                    miss *= 1.0 - weight
            if name == "encoded_payload" and blobs:
                miss *= 1.0 - 0.8
            out[i, j] = 1.0 - miss
        if out[i, _REMOVAL] >= FIRES_AT and _found(*_PERSONA, text):  # a persona freed of rules
            out[i, _PERSONA_COL] = 1.0 - (1.0 - out[i, _PERSONA_COL]) * 0.2
    return out


def length_feature(texts: Sequence[str]) -> np.ndarray:
    """log(1 + chars) scaled so 20k chars is 1; bounded, so no length dominates the head."""
    top = math.log1p(20_000)
    return np.array([[min(1.0, math.log1p(len(t)) / top)] for t in texts], dtype=np.float64)


def feature_names(dim: int) -> list[str]:
    return [f"emb_{i}" for i in range(dim)] + [f"rule_{s}" for s in SIGNALS] + ["log_length"]
