"""Built-in prompt-injection / jailbreak / prompt-extraction detector: a small linear model.

Why this shape: the server runs it per request in Python, so the model must cost a few tens of
microseconds. Every feature is a binary "present in this text" test, and ALL of them (a fixed
vocabulary of word uni/bi-grams chosen at training time plus hand-written attack patterns) sit in
one RE2 ``Set``: one linear-time C scan returns the indices present, Python only sums their
weights. The weights come from logistic regression trained by ``tools/train_injection.py`` and ship
in ``injection_model.json`` next to this file.

Word terms are only allowed to raise the score of a text that also has a strong hand-written attack
pattern (a "trigger", weight >= TRIGGER_WEIGHT). Without one they can only lower it: the training
data's benign and attack rows differ in topic (e-mail words, CyberSecEval questions that are attacks
only under a hidden system prompt), and letting topic words alone push an everyday request over the
threshold blocked "What is the capital of France?". The bias then sets where featureless text sits.

Long texts (an e-mail with an instruction hidden in the middle) are also scored in overlapping
windows and the maximum is taken, so a short attack is not diluted by a long benign document.

Retrieved documents (e-mails with header lines) get one more, derived feature: a line that is a
stand-alone chat request ("Recommend a good book.", "How can I ...?") and is not about the
document itself. Such a line is ordinary in a prompt but out of place inside a mail body, which
is how an indirect injection hands the reading model a task of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import re2

from extproc.backends import register
from extproc.backends.base import INPUT, Capabilities, Guardrail, ScanContext, new_finding
from extproc.config.loader import ConfigError, GuardrailSpec
from extproc.text.normalize import normalize
from extproc.text.offsets import byte_spans_to_chars
from extproc.text.re2_raw import UNANCHORED, raw_match
from extproc.vocabulary import Action, Finding

MODEL_PATH = Path(__file__).with_name("injection_model.json")
FINDING_TYPE = "PROMPT_INJECTION"
SENSITIVITY_THRESHOLDS = {"low": 0.8, "medium": 0.5, "high": 0.3}  # probability of "attack"
WINDOW_CHARS = 500  # long texts are also scored in windows of this size ...
WINDOW_STRIDE = 250  # ... overlapping by half, so an attack on a boundary is still seen whole
SPAN_MARGIN = 3.0  # windows this close (in logit) to the best one belong to the reported span
MIN_TERM_NORM = 8  # term sums are divided by sqrt(max(n, this)): one word can't decide a short text
TRIGGER_WEIGHT = 0.3  # a pattern this strong lets positive term evidence count (see module doc)
UNTRIGGERED_TERM_CAP = 0.0  # most (logit) that terms may add to a text without a trigger
CODE_CONTEXT = "code_context"  # the pattern whose presence switches off code_sensitive ones
DOCUMENT_CONTEXT = "email_header"  # the pattern that marks a text as a retrieved document
DOCUMENT_REQUEST = "document_request"  # counts only inside a document (see InjectionModel)
PERSONA_WITH_HARM = "persona_with_harm"  # a persona set up; needs_harm: only with HARMFUL_ASK
HARMFUL_ASK = "harmful_ask"
# Patterns that learn no weight: they only switch others on (harm for the needs_harm ones) or off
# (code for the code_sensitive ones). A harmful topic alone is not an injection: the XSTest- and
# WildGuard-style benign prompts are full of "kill", "weapon" and "drugs".
CONTEXT_ONLY = frozenset({CODE_CONTEXT, HARMFUL_ASK})
_SET_MAX_MEM = 256 << 20  # RE2::Set fails (returns nothing) if its DFA runs out of memory


@dataclass(frozen=True, slots=True)
class Pattern:
    """A hand-written feature; ``kind`` decides the finding's subtype when it fires."""

    name: str
    regex: str  # RE2 syntax, applied to the lower-cased text
    kind: str = ""  # INSTRUCTION_OVERRIDE | JAILBREAK | PROMPT_EXTRACTION | "" (no opinion)
    code_sensitive: bool = False  # symbol-soup evidence: meaningless when the text is code
    # may this pattern let word terms raise the score? Framing words ("story", "imagine"), topic
    # words and layout are everyday in creative and technical requests: whatever their weight,
    # they are context, not a sign of an attack, so they never open the gate for topic words.
    trigger: bool = True
    # counts only when the text also has a harmful ask: fiction, stakes and personas are how
    # persuasive role-play wraps a harmful request, and everyday creative writing without one
    needs_harm: bool = False


_IGNORE = (
    r"(?:ignore|disregard|forget|skip|neglect|overlook|omit|bypass|override|discard|dismiss"
    r"|abandon|drop|erase|delete|set aside|pay no attention to|do not follow|don't follow"
    r"|stop following"
    r"|regardless of|irrespective of|without regard to)"
)
_PRIOR = r"(?:previous|prior|above|earlier|preceding|foregoing|former|initial|original|old|all|any|your|the|these|those|system|my)"  # noqa: E501 (one alternation per line reads best)
_ORDERS = (
    r"(?:instructions?|prompts?|directions?|directives?|rules?|guidelines?|commands?"
    r"|context|constraints?|restrictions?|programming|guidance|polic(?:y|ies)|assignments?"
    r"|tasks?|information|everything|settings|training|safeguards?|filters?)"
)
_SHOW = (
    r"(?:reveal|show|print|output|repeat|display|tell me|give me|share|leak|dump|write out|spell out"  # noqa: E501 (one alternation per line reads best)
    r"|recite|list|disclose|expose|return|echo|paste|copy|translate|summari[sz]e|encode)"
)
_HIDDEN = r"(?:system|initial|original|hidden|secret|internal|above|previous|prior|first|pre-?prompt|starting)"  # noqa: E501 (one alternation per line reads best)

_ML_SPAN = r"[^\n.!?\x{3002}\x{ff01}\x{ff1f}]"  # within one sentence (also CJK full stops)
# Multilingual lexicons (lower-cased; see the ml_* patterns). Written from each language's
# ordinary words for these acts, not from any dataset.
_ML_IGNORE = (
    r"忽略|忽视|无视|無視|不要理会|不要理會|忘记|忘記|忘掉|忘れ|無視して|무시|잊어|잊고"
    r"|игнорируй|игнорируйте|проигнорируй|забудь|забудьте|не обращай внимания"
    r"|अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल जाओ|भूल जाएं|उपेक्षा"
    r"|تجاهل|تجاهلي|انس|انسَ|لا تلتزم|نظرانداز|نظر انداز|بھول جاؤ|بھول جائیں"
    r"|উপেক্ষা|ভুলে যাও|ভুলে যান|অগ্রাহ্য"
    r"|\bignor[ae]\b|\bignore[zs]?\b|\bignorar\b|\bignoriere\b|\bignorieren\b|\bolvida\b|\bolvide\b"
    r"|\boublie[zs]?\b|\besque[çc]a\b|\bdesconsidere\b|\bdimentica\b|\bvergiss\b"
    r"|\babaikan\b|\blupakan\b|\bunut\b|\byok say\b|\bg[öo]rmezden gel\pL*"
    r"|\bb[ỏo] qua\b|\bqu[êe]n\b"
    r"|\bnon considerare\b"
)
_ML_ORDERS = (
    r"指令|指示|说明|規則|规则|提示词|提示詞|命令|設定|设定|지시|지침|명령|규칙|プロンプト|ルール"
    r"|инструкци|указани|правила|директив"
    r"|निर्देश|नियम|आदेश|تعليمات|التعليمات|الأوامر|أوامر|القواعد|ہدایات|ہدایت|قوانین|احکامات"
    r"|নির্দেশ|নিয়ম|আদেশ"
    r"|instru[çc][õo]es|instrucciones|instructions|istruzioni|anweisungen|regeln|reglas|regras"
    r"|r[èe]gles|regole|consignes|instruksi|perintah|aturan|talimat\pL*|kurallar\pL*"
    r"|h[ưu][ớo]ng d[ẫa]n|quy t[ắa]c|ch[ỉi] d[ẫa]n"
)
_ML_SYSTEM_PROMPT = (
    r"系统提示|系統提示|系统指令|系統指令|系统设定|隐藏指令|システムプロンプト|システム指示"
    r"|初期プロンプト|시스템 프롬프트|시스템 지시|시스템 메시지"
    r"|системн\pL* (?:промпт|подсказк\pL*|инструкци\pL*|сообщени\pL*)|скрыт\pL* инструкци"
    r"|सिस्टम प्रॉम्प्ट|सिस्टम प्रोम्प्ट|सिस्टम निर्देश|छिपे (?:हुए )?निर्देश"
    r"|موجه النظام|تعليمات النظام|رسالة النظام|سسٹم پرامپٹ|سسٹم ہدایات|سسٹم پرومپٹ"
    r"|সিস্টেম প্রম্পট|সিস্টেম নির্দেশ"
    r"|\bprompt (?:do|de) sistema\b|\bprompt del sistema\b|\bprompt di sistema\b"
    r"|\b(?:invite|prompt|consignes?) (?:du )?syst[èe]me\b|\bsystem-?prompt\b|\bsystemanweisung"
    r"|\bprompt sistem\b|\bsistem (?:istem\pL*|talimat\pL*|komut\pL*)"
    r"|\bl[ờo]i nh[ắa]c h[ệe] th[ốo]ng\b|\bh[ướu][ớo]ng d[ẫa]n h[ệe] th[ốo]ng\b"
    r"|\binstrucciones del sistema\b|\binstru[çc][õo]es do sistema\b|\bistruzioni di sistema\b"
)
_ML_SHOW = (
    r"显示|顯示|告诉我|告訴我|输出|輸出|打印|重复|重複|泄露|透露|展示|教えて|見せて|表示して|出力"
    r"|繰り返|알려|보여|출력|반복|공개"
    r"|покажи|выведи|повтори|раскрой|скажи|напиши"
    r"|दिखाओ|दिखाएं|बताओ|बताएं|दोहराओ|प्रकट"
    r"|أظهر|اعرض|اكشف|أخبرني|كرر|اطبع|دکھاؤ|دکھائیں|بتاؤ|بتائیں|دہراؤ"
    r"|দেখাও|দেখান|বলো|বলুন|পুনরাবৃত্তি"
    r"|\bmostra\b|\bmuestra\b|\bmu[ée]strame\b|\brevela\b|\brepite\b|\brepete?\b|\bimprime\b"
    r"|\bmontre[zs]?\b|\baffiche[zs]?\b|\br[ée]v[èe]le[zs]?\b|\br[ée]p[èe]te[zs]?\b"
    r"|\bzeig\pL*|\bgib\b|\bwiederhole\pL*|\btunjukkan\b|\btampilkan\b|\bulangi\pL*"
    r"|\bg[öo]ster\b|\btekrarla\b|\bhi[ểe]n th[ịi]\b|\bcho t[ôo]i xem\b|\bl[ặa]p l[ạa]i\b"
    r"|\bripeti\b|\bdimmi\b"
)
_ML_PROMPT = (
    r"提示词|提示詞|指令|プロンプト|指示|프롬프트|지시"
    r"|промпт|инструкци|प्रॉम्प्ट|प्रोम्प्ट|निर्देश|الموجه|التعليمات|تعليماتك|پرامپٹ|ہدایات"
    r"|প্রম্পট|নির্দেশ"
    r"|\bprompt\b|\binstru[çc][õo]es\b|\binstrucciones\b|\bistruzioni\b|\banweisungen\b"
    r"|\binstruksi\b|\btalimat\pL*|\bh[ưu][ớo]ng d[ẫa]n\b|\bconsignes\b"
)
_ML_NO_LIMITS = (
    r"没有任何限制|没有限制|不受任何限制|不受限制|无限制|無限制|沒有限制|不受約束|没有道德"
    r"|制限なし|制限のない|制限を受けない|制限がない|検閲なし|제한 없|제한이 없|검열 없"
    r"|без (?:каких-либо )?(?:ограничений|цензуры|фильтров|правил)"
    r"|बिना किसी (?:प्रतिबंध|सीमा|रोक)|बिना (?:प्रतिबंध|सेंसर)|कोई (?:प्रतिबंध|सीमा) नहीं"
    r"|بدون (?:أي )?(?:قيود|رقابة|حدود)|دون (?:أي )?قيود"
    r"|بغیر (?:کسی )?(?:پابندی|حد)|کوئی پابندی نہیں"
    r"|কোনো (?:বিধিনিষেধ|সীমাবদ্ধতা)|বিধিনিষেধ ছাড়া|সীমাবদ্ধতা ছাড়া"
    r"|\bsem (?:restri[çc][õo]es|limites|filtros?|censura)\b|\bsin (?:restricciones|l[íi]mites"
    r"|filtros?|censura)\b|\bsans (?:restrictions?|limites?|filtres?|censure)\b"
    r"|\bohne (?:einschr[äa]nkungen|filter|zensur|grenzen)\b|\btanpa (?:batasan|filter|sensor)\b"
    r"|\bk[\x{131}i]s[\x{131}i]tlama(?:s[\x{131}i]z| olmadan)"
    r"|\bs[\x{131}i]n[\x{131}i]rs[\x{131}i]z\b"
    r"|\bsans[üu]rs[üu]z\b"
    r"|\bkh[ôo]ng (?:c[óo] )?(?:gi[ớo]i h[ạa]n|h[ạa]n ch[ếe]|ki[ểe]m duy[ệe]t)\b"
    r"|\bsenza (?:restrizioni|limiti|filtri|censura)\b"
)
_ML_MODE = (
    r"开发者模式|開發者模式|開発者モード|개발자 모드|режим разработчика|डेवलपर मोड|وضع المطور"
    r"|ڈویلپر موڈ|ডেভেলপার মোড|\bmodo (?:de )?(?:desenvolvedor|desarrollador|sviluppatore)\b"
    r"|\bmodalit[àa] sviluppatore\b|\bmode (?:d[ée]veloppeur|pengembang)\b|\bentwicklermodus\b"
    r"|\bgeli[şs]tirici modu\b|\bch[ếe] đ[ộo] nh[àa] ph[áa]t tri[ểe]n\b"
    r"|从现在开始你是|從現在開始你是|今から(?:あなたは|君は)|지금부터 (?:너는|당신은)"
    r"|с этого момента ты|अब से तुम|من الآن فصاعدا أنت|اب سے تم|এখন থেকে তুমি"  # noqa: RUF001
    r"|\ba partir de (?:ahora|agora) (?:eres|você é|tu és)\b|\bd[ée]sormais,? tu es\b"
    r"|\bmulai sekarang kamu\b|\bbundan sonra sen\b|\bt[ừu] b[âa]y gi[ờo] b[ạa]n l[àa]\b"
    r"|\bda ora in poi sei\b"
)

# A whole line that reads as a request to an assistant (what a user types into a chat box).
_REQUEST_LINE = (
    r"(?:^|\n|\|content:)[ \t]*(?:what|how|why|who|which|where|when|can you|could you"
    r"|would you|is there|are there|describe|provide|recommend|suggest|explain|list|give"
    r"|write|summari[sz]e|determine|identify|compare|analy[sz]e|translate|create|generate"
    r"|tell me|share|discuss|outline|name|find|invert|reverse)\b[^\n|]{8,200}?[ \t]*(?:\n|$)"
)
# ... unless it is about the document itself: the user's own "Summarise this e-mail:" line.
_ABOUT_DOCUMENT = (
    r"\b(?:this|the|that|these|above|below|following|attached|my|your|its)\s+(?:e-?mails?"
    r"|messages?|mail|thread|invoice|order|payment|booking|ticket|account|letter|reply"
    r"|text|document|conversation)\b|\b(?:the following|below|above|attached|let me know"
    r"|reply|respond|draft|summari[sz]e|classify|extract)\b"
)


PATTERNS: tuple[Pattern, ...] = (
    # instruction override
    Pattern(
        "override",
        rf"\b{_IGNORE}\s+(?:(?:all|any|of|the|your|my|every|each|these|those|that|this)\s+)*"
        rf"{_PRIOR}\s+(?:\w+\s+)?{_ORDERS}\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "forget_everything",
        r"\b(?:forget|ignore|disregard|abandon|overlook)\s+(?:about\s+)?(?:everything|all"
        r"|anything|what (?:i|you|we))\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "ignore_prior_near",
        rf"\b{_IGNORE}\b\W+(?:\w+\W+){{0,5}}(?:(?:before|previously|instructed|told|said)\b"
        r"|(?:above|earlier|so far)\s*(?:[.,;:!?]|$|\s+and\b))",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "foreign_ignore",
        r"(?:\b(?:vergiss|vergessen sie|ignorier\w*|missachte\w*)\s+(?:\w+\s+){0,3}(?:alles"
        r"|anweisung"
        r"|vorherig|bisherig|obig|zuvor|vorher|instruktion|befehl|regeln)"
        r"|\b(?:olvida|olvide|ignora|ignoren|oublie|oubliez|ignorez|dimentica|dimenticate"
        r"|esque[çc]a|esquece)\s+(?:\w+\s+){0,3}(?:todo|toda|tudo|tout|tutto|instru|consign|istruz"
        r"|anterior|previ|pr[ée]c[ée]dent|precedent|lo que|ce qui|ce que|quello|o que|reglas"
        r"|r[èe]gles)"
        r"|\bzaboravi|無視|忽略|忘记|忘れ|игнорир|забудь|무시|잊어)",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "foreign_all_previous",
        r"\b(?:alle[ns]?|s[äa]mtliche[ns]?|die|den)\s+(?:\w+\s+)?(?:vorherigen|bisherigen|obigen"
        r"|fr[üu]heren|vorangegangenen)\s+(?:informationen|anweisungen|instruktionen|aufgaben"
        r"|befehle"
        r"|regeln|anfragen)|\b(?:zuvor|vorher|bisher) gesagte|\bwas ich (?:vorher|zuvor"
        r"|davor) gesagt",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "foreign_instructions",
        r"(?:instruç|instrucc|istruzion|anweisung|instruktion|instrukcij|consignes|инструкц|지시"
        r"|指示|指令)",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "new_instructions",
        r"\b(?:new|updated|real|actual|neue|nouvelles?|nuevas?)\s+(?:instructions?|directives?"
        r"|anweisungen|prompt)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "directive_header",
        # ("New rules:" is left out: a game's or an office's rules; rules_now covers the switch)
        r"\b(?:new|additional|next|updated|real|neue|weitere|nouvelle|nueva)\s+(?:task|statement"
        r"|instructions?|orders?|aufgabe|anweisung|befehl|t[âa]che"
        r"|tarea)\s*[:\-\x{2013}\x{2014}]"
        r"|(?:^|\\n|[.?!]\s)\s*(?:instructions?|order|befehl|anweisung|task|aufgabe)\s*:",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "stop_and_do",
        r"\b(?:stop|stopp|halt|attention|achtung)\s*[:!\-\x{2013}\x{2014}]+\s*(?:(?:stop"
        r"|stopp)\s*[:!\-\x{2013}\x{2014}]+\s*)?"
        r"(?:\w+\s*){0,3}?(?:write|say|print|output|answer|respond|schreibe?|sag|sage|antworte"
        r")|\b(?:attention|achtung)\s*[:!\-\x{2013}\x{2014}]+\s*(?:stop|stopp)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "task_pivot",
        r"\b(?:that is|that's|this is|das ist|das war|das genügt|das reicht)\s+(?:\w+\s+)?(?:done"
        r"|enough|erledigt|genug|ok)\b|\bdas genügt\b|\bnun folgen weitere\b|\b(?:weitere[n]?"
        r"|neue[n]?|another|a further|the next)\s+(?:aufgabe|herausforderung|challenge for you)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "ignore_the_documents",
        r"\b(?:do not|don't|dont|never)\s+(?:look|rely|refer)\s+(?:\w+\s+){0,2}(?:documents?"
        r"|articles?|context|sources?)\b|\bnot (?:by|from|based on|with) the (?:articles?"
        r"|documents?"
        r"|context)\b|\b(?:answer|respond) (?:by|from|with|using) your own knowledge\b"
        r"|\bnicht mit \W?die antwort steht nicht",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "role_reassign",
        r"\bi want you to (?:act|pretend|behave|play|be|become|respond as)\b"
        r"|\b(?:ich möchte|ich will),? dass (?:sie|du) (?:\w+\s+){0,2}als\b"
        r"|\bals\s+(?:\w+[\s-]+){1,5}(?:fungier|auftret|agier)\w*"
        r"|\b(?:jetzt|nun|ab jetzt|ab sofort) bist du\b|\bdu bist (?:jetzt|nun|ab sofort|keine?)\b"
        r"|\b(?:act[úu]a|act[úu]e) como\b|\bagis comme\b|\bagissez comme\b|\bjoue le r[ôo]le\b"
        r"|\bnow,? you(?: are|'re) (?:a|an|my|the)\b|\bnow act as\b",
        "JAILBREAK",
        trigger=False,  # "I want you to act as a travel guide": role-play is everyday framing
    ),
    Pattern(
        "forced_output",
        r"\b(?:say|output|reply|respond|answer|antworte|sage|sag|schreibe|write)\s*(?:only\s+|just"
        r"\s+|nur\s+|mit\s+|with\s+)?:?\s*[\"“„][^\"”“]{1,60}[\"”“]\s*(?:[.!?]|$|and\b|und\b)"
        r"|\bsay (?:yes|no)\s*[.!]|\b(?:antworte|antworten sie) (?:mit|nur)\b"
        r"|\bif i say\b[^.?!]{0,40}\byou say\b|\bsi yo digo\b|\bwenn ich \w+ sage\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "ignore_the_data_and",
        rf"\b{_IGNORE}\s+(?:the|this|that|these|those|all|any)\s+(?:\w+\s+)?(?:documents?|articles?"
        r"|resume|text|function|code|e-?mails?|page|webpage|paper|content|input|data|context"
        r"|question|review|message|file)\s+(?:and|then|,)\s+(?:\w+\s+){0,2}(?:say|state|output|print"
        r"|write|respond|reply|answer|tell|indicate|return|claim|admit)\b"
        r"|\b(?:ignorez|ignora|ignoriere|ignorieren sie)\s+(?:\w+\s+){0,3}(?:et|y|e|und)\s+"
        r"(?:indiquez|dites|écrivez|répondez|di|dí|escribe|responde|sag|schreibe|antworte|gib)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "hidden_markup_instruction",
        r"<!--[^>]{0,300}?\b(?:say|tell the user|respond|reply|ignore|output|print|instead"
        r"|instruct)"
        r"|\b(?:training data|system|developer|admin|security)\s+override\s*:",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "payload_split",
        r"\bpart\s*1\b[^\n]{0,80}\bpart\s*2\b|\bcombine\s+\w,\s*\w,?\s+and\s+\w\b"
        r"|\binterlace\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern("from_now_on", r"\b(?:from now on|ab (?:jetzt|sofort)|starting now|henceforth)\b"),
    Pattern(
        "instead_do",
        r"\binstead\b\W+(?:\w+\W+){0,2}(?:say|print|write|respond|answer|output|reply|tell)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "change_instructions",
        rf"\b(?:change|replace|update|modify|rewrite|overwrite)\s+(?:your|the|my"
        rf"|all)\s+{_ORDERS}\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "role_marker",
        r"(?:<\|?(?:im_start|im_end|system|endoftext|user|assistant)\|?>|\[/?(?:inst|system|sys)\]"
        r"|</?(?:system|sys|instructions?)>|(?:^|\n)\s*(?:system|assistant)\s*:"
        r"|#{2,}\s*(?:system|instructions?|new instructions?|assistant)\b"
        r"|[=\-#*]{3,}\s*end\b|\bend\s*[=\-#*]{3,})",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "end_of_input",
        r"\b(?:end of|ende der|end)\s+(?:the\s+)?(?:document|text|input|email|e-mail|context|prompt"
        r"|instructions|conversation|user input|data)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern("separator_line", r"(?:^|\n)\s*(?:#{3,}|-{3,}|={3,}|\*{3,}|_{3,})", trigger=False),
    Pattern(
        "addressed_to_ai",
        r"\b(?:ai|assistant|chatbot|model|llm|gpt|chatgpt|language model|bot)\s*[,:]\s*"
        r"(?:please\s+)?(?:ignore|you must|you should|do not|don't|now|stop|respond|reply|say)",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "impersonate_authority",
        r"\b(?:i am|i'm|this is|as)\s+(?:your|the|an?)?\s*(?:\w+\s+)?(?:developer|creator|admin"
        r"|administrator|owner|boss|programmer|operator|supervisor|president|god|ceo|manager"
        r"|engineer at openai|ai developed by)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "admin_mode",
        r"\b(?:administrator|admin|sudo|root|maintenance|debug|god|developer|dev)\s+"
        r"(?:override|mode|access|command|privileges)\b|\boverride (?:mode|protocol|code)\b",
        "JAILBREAK",
    ),
    # jailbreak / role play
    Pattern(
        "dan",
        r"\b(?:dan|do anything now|stan|dude|aim|evil-?bot|anti-?gpt|betterdan)\b",
        "JAILBREAK",
    ),
    Pattern(
        "developer_mode",
        r"\b(?:developer|dev|god|unrestricted|jailbreak|jailbroken)\s+mode\b",
        "JAILBREAK",
    ),
    Pattern("jailbreak_word", r"\bjail-?br(?:eak|oken|eaking)\b", "JAILBREAK"),
    Pattern(
        "no_limits",
        r"\b(?:no|without|free (?:from|of)|not bound by|not restricted by|beyond|break free of"
        r"|freed from|doesn't have|does not have|don't have|do not have)\s+(?:any\s+)?(?:\w+\s+)?"
        r"(?:restrictions?|limitations?|limits|filters?|filtering|censorship|guidelines|rules"
        r"|ethics"
        r"|morals|boundaries|constraints|restraints|policies|safeguards)\b",
        "JAILBREAK",
    ),
    Pattern(
        "unfiltered",
        r"\b(?:unfiltered|uncensored|amoral|unrestricted|unethical|unbound|unlimited)\b",
        "JAILBREAK",
    ),
    Pattern(
        "content_policy",
        r"\b(?:openai|content|usage|safety|ethical)\s+(?:polic(?:y|ies)|guidelines|filters?"
        r"|restrictions)\b",
        "JAILBREAK",
    ),
    Pattern(
        "stay_in_character",
        r"\b(?:stay|staying|remain|break|breaking|out of)\s+(?:in\s+)?(?:(?:their|his|her|your|the)\s+)?"  # noqa: E501 (one alternation per line reads best)
        r"(?:character|role)s?\b",
        "JAILBREAK",
    ),
    Pattern(
        "act_as",
        r"\b(?:act|acting|pretend|pretending|roleplay|role-play|role play|behave|respond|answer)\s+"
        r"(?:to be|as|like)\s+(?:an?\s+|my\s+|the\s+)?",
        "JAILBREAK",
        trigger=False,  # as role_reassign
    ),
    Pattern(
        "you_are_now",
        r"\byou(?:\s+are|'re)\s+(?:now|going to (?:act|be|pretend)|no longer|free|about to immerse)\b",  # noqa: E501 (one alternation per line reads best)
        "JAILBREAK",
    ),
    Pattern(
        "simulate",
        r"\b(?:simulate|emulate|hypothetical|imagine|fictional|fiction|story|scenario|movie|novel"
        r"|screenplay|script)\b",
        trigger=False,
        needs_harm=True,
    ),
    Pattern(
        "two_responses",
        r"\b(?:two|2|dual|both)\s+(?:different\s+)?(?:responses|answers|ways|paragraphs"
        r"|personalities)\b",
        "JAILBREAK",
    ),
    Pattern("lock_emoji", r"(?:🔓|🔒|\[🔓|\(🔓)", "JAILBREAK"),
    Pattern(
        "never_refuse",
        r"\b(?:never|not|won't|will not|cannot|can't|don't|do not|must not|shall not)\s+"
        r"(?:ever\s+)?(?:refuse|decline|apologi[sz]e|warn|say (?:no|sorry)|deny)\b",
        "JAILBREAK",
    ),
    Pattern(
        "sure_here",
        r"(?:\bsure,?\s+here\s+(?:is|are)\b|\bstart (?:your|the) (?:response|reply|answer) with\b"
        r"|\bbegin (?:your|the) (?:response|reply|answer) with\b)",
        "JAILBREAK",
    ),
    Pattern(
        "as_an_ai",  # addressing the model as a model (not merely mentioning one)
        r"\bas an ai\b|\bas a (?:large )?language model\b|\b(?:hello|hi|hey|dear),?\s+(?:chatgpt"
        r"|gpt"
        r"|llm|ai|bard|claude|gemini)\b",
    ),
    Pattern(
        "harmful_ask",
        r"\b(?:bomb|explosive|weapon|malware|ransomware|virus|hack|hacking|exploit|steal|poison"
        r"|drugs?"
        r"|meth|cocaine|suicide|self-harm|kill|murder|genocide|racist|sexist|defamatory|illegal"
        r"|harass(?:ment|ing)?|phishing|fraud|counterfeit|launder|smuggl\w*|terroris\w*"
        r"|extremis\w*|weapons?|firearms?|guns?|explosives?|overdose|stalk\w*|blackmail\w*"
        r"|extort\w*|scam\w*|tax evasion|evade (?:taxes|the police|detection)|insider trading"
        r"|disinformation|misinformation|propaganda|hate speech|torture|assault|keylogger"
        r"|ddos|botnet|identity theft|without (?:getting|being) caught|untraceable|undetectable"
        r"|lethal|methamphetamine|fentanyl|nerve agent|bioweapon|sexual|explicit|defam\w*"
        r"|manipulat\w*|cheat(?:ing)?|crack(?:ing)? (?:a |the )?(?:password|software|wifi)"
        # the usage-policy harm categories in plainer words (what persuasive role-play uses
        # instead of the blunt ones above): intrusion, dangerous chemistry, abuse, hate, fraud
        r"|unauthori[sz]ed access|break(?:ing)? into|gain access to|without (?:their|his|her"
        r"|the owner's|anyone's) (?:consent|permission|knowledge)|spy(?:ing)? on|doxx\w*"
        r"|spyware|trojan|rootkit|backdoor|cyber-?attacks?|privilege escalation|sql injection"
        r"|synthesi[sz]\w*|toxins?|toxic gas|deadly|lethal dose|napalm|thermite|ricin|anthrax"
        r"|pipe bomb|chemical weapons?|sabotag\w*|arson|burglar\w*|shoplift\w*|rob(?:bing)? a"
        r"|traffick\w*|violent|violence|abus(?:e|ing) (?:a|an|my|his|her|children|animals)"
        r"|bull(?:y|ying) (?:a|my|him|her)|slurs?|xenophob\w*|homophob\w*|antisemit\w*"
        r"|white supremac\w*|holocaust denial|conspiracy theor\w*|hoax|fake news|forg(?:e|ed"
        r"|ery|ing)|fake (?:ids?|passports?|reviews|documents)|defraud\w*|embezzl\w*|brib\w*"
        r"|pirat(?:ed|ing)|porn\w*|erotic\w*|nudes?|eating disorder|anorexi\w*|radicali[sz]\w*)\b",
        trigger=False,
    ),
    Pattern(
        PERSONA_WITH_HARM,  # counts only next to harmful_ask: role-play as a wrapper for harm
        r"\b(?:you are|you're|imagine you are|imagine you're|pretend to be|pretend you are"
        r"|act as|the role of)\s+(?:an?|the|my)\b",
        "JAILBREAK",
        needs_harm=True,
    ),
    # system prompt extraction
    Pattern(
        "show_prompt",
        rf"\b{_SHOW}\b\W+(?:\w+\W+){{0,4}}{_HIDDEN}\s+(?:\w+\s+)?(?:prompts?|instructions?|rules"
        rf"|messages?"
        r"|configuration|directives|guidelines|text|context|conversation)\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "system_prompt",
        r"\b(?:your|this|the above|above|preceding)\s+(?:own\s+|original\s+|full\s+)?(?:system"
        r"|initial"
        r"|original|hidden|secret|pre)[ _-]?(?:prompt|instructions|message|configuration)\b"
        r"|\bsystemprompt\b|\b(?:the|this) prompt above\b|\binformation in the prompt\b"
        r"|\bobige eingabeaufforderung\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "your_instructions",
        r"\b(?:your|those)\s+(?:\w+\s+)?(?:instructions|prompt)\s+(?:are|were|is|was)\b"
        r"|\bwhat\s+(?:are|were|is|was)\s+(?:your|those)\s+(?:\w+\s+)?(?:instructions|prompt"
        r"|rules)\b"
        r"|\bwhat is written above\b|\b(?:return|show|print|give me|reveal)\s+(?:me\s+)?your\s+"
        r"(?:embeddings|weights|training data|parameters|source code)\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "verbatim",
        r"\b(?:word for word|verbatim|in full|everything above|text above|words above|above text"
        r"|this entire conversation|all of the above|beginning of (?:this|the) (?:prompt|conversation))\b",  # noqa: E501 (one alternation per line reads best)
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "password",
        r"\b(?:what(?:'s| is| was| are)|tell me|give me|share|reveal|confirm|disclose|send me|spell"
        r"|print|say|type|output|provide|repeat|leak)\b\W+(?:\w+\W+){0,4}?(?:password|passcode"
        r"|secret (?:key|code|word|string)|access code|api key|credentials|confidential string)\b"
        r"|\b(?:your|the system's|our|the secret)\s+(?:password|passcode|secret key|credentials)\s+"
        r"(?:is|are|to|for|with)\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "database_dump",
        r"\b(?:print|dump|show|export|list|give me)\s+(?:me\s+)?(?:your|the)\s+(?:entire\s+|whole"
        r"\s+|full\s+)?(?:database|user table|customer records)\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "user_data",
        r"\b(?:the\s+)?users?'?s?\s+(?:email|e-mail|home|address|password|phone|location|bank"
        r"|credit card|personal|private|data|information|details|balance|account)\b"
        r"|\bwhere does \w+(?: \w+)? live\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "foreign_password",
        r"(?:\b(?:quel est|quelle est|qual [ée]|cu[áa]l es|wie lautet|was ist|dime|dis-moi|diga"
        r"|compartilhe|partage|teile|sua|votre|ton|tu|su|dein"
        r"|ihr)\W+(?:\w+\W+){0,3}?(?:mot de passe"
        r"|contraseña|senha|passwort)|パスワードを教え|密码是什么|비밀번호를 알려|пароль от)",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "you_were_given",
        r"\byou (?:were|have been) (?:given|told|instructed|programmed)\b",
        "PROMPT_EXTRACTION",
    ),
    # adversarial-suffix gibberish (GCG-style); one run is common in code, several are not
    Pattern("symbol_run", r"[\[\]{}()<>\\|^~`]{3,}", code_sensitive=True),
    Pattern(
        "symbol_runs_3",
        r"(?:[\[\]{}()<>\\|^~=@#$%&*+;`]{2,}[^\[\]{}()<>\\|^~=@#$%&*+;`]{1,40}){3}",
        code_sensitive=True,
    ),
    Pattern("word_symbol_word", r"[a-z]{2,}[\[\]{}()\\^~`]{1,3}[a-z]{2,}", code_sensitive=True),
    Pattern("camel_mash", r"\b[a-z]{3,}(?:[\[({<\\]+[a-z]+){2,}", code_sensitive=True),
    Pattern(
        "code_context",  # code structure: the symbol patterns above then say nothing (see present)
        r"(?m)^\s*(?:def|class|import|from \S+ import|return|#include|function|public|const|let"
        r"|var)"
        r"\s[^\n]*$|(?m)\)\s*[{;]\s*$|\):\s*\n[ \t]+\S"
        r"|(?m)^\s*[\w.]+(?:\[[^\]\n]*\])?\s*[+\-*/]?=\s*[\w\[{(]"
        r"|(?m)^\s*```|(?:^|\s)`\w[^`\n]{0,60}`(?:\W|$)",
    ),
    Pattern("long_base64", r"[a-z0-9+/]{60,}={0,2}", trigger=False),
    # instructions aimed at the model that reads a document (indirect injection)
    Pattern(
        "reply_directive",
        r"\b(?:in|into|to|with|within|throughout|from|augment|enhance|modify|reverse|begin|end"
        r"|start)"
        r"\s+your\s+(?:\w+\s+)?(?:reply|response|answer|output|responses|replies|answers)\b"
        r"|\byour\s+(?:reply|response|answer)\s+(?:should|must|in|with|using|backwards?|by)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "reply_format",
        r"\b(?:reply|respond|answer|write|render|provide|translate|display"
        r"|output)\s+(?:\w+\s+){0,3}"
        r"(?:in|using|into|to)\s+(?:\w+\s+)?(?:german|french|spanish|italian|portuguese|chinese"
        r"|japanese|russian|base\s?\d+|hex|binary|morse|rot13|leetspeak|emojis?|pig latin|reverse)\b",  # noqa: E501 (one alternation per line reads best)
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "encoding",
        r"\b(?:base ?(?:64|32|16|85)|rot-?13|caesar cipher|hexadecimal|morse code|leetspeak"
        r"|pig latin|backwards?|reverse (?:the )?(?:order|character))\b",
        trigger=False,
    ),
    Pattern(
        "email_header",
        r"(?:^|\|)\s*(?:subject|email_from|from|received date|content|to|cc)\s*:",
        trigger=False,
    ),
    Pattern(
        "repeat_after_me",
        r"\brepeat after me\b|\bsay (?:exactly|only|just)\b|\b(?:state|claim) that\b",
    ),
    Pattern(
        "ignore_the_above",
        rf"\b{_IGNORE}\s+(?:all\s+)?(?:of\s+)?(?:the|everything)\s+(?:text\s+)?above\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "fake_dialogue",  # invented Q/A turns steer the model's next answer (few-shot injection)
        r"\bq:\s[^\n]{3,300}?\ba:\s[^\n]{3,500}?\bq:\s",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern("binary_octets", r"(?:\b[01]{8}\s+){6,}[01]{8}\b"),
    Pattern(
        DOCUMENT_REQUEST,  # a stand-alone chat request line; see _request_spans
        _REQUEST_LINE,
        "INSTRUCTION_OVERRIDE",
    ),
    # --- the issue-16 error classes, written from how these attacks are described in the
    # literature (prompt-leak guides, GCG / PAIR papers), not from eval rows ---
    Pattern(
        "reformat_prompt",  # extraction by reformatting: "format your instructions as a list"
        r"\b(?:format|reformat|convert|rewrite|re-write|put|turn|render|output|list|enumerate"
        r"|summari[sz]e|translate|encode|paraphrase|restate|rephrase|transcribe|spell out"
        r"|write|wrap|place|insert)\b\W+(?:\w+\W+){0,3}?(?:your|the system's|the assistant's)\s+"
        r"(?:\w+\s+)?(?:instructions|rules|guidelines|prompt|directives|configuration|system"
        r"|initiali[sz]ation|setup|programming|constraints|policies|context window)\b"
        r"|\b(?:instructions|rules|guidelines|prompt|directives)\s+(?:you (?:were|have been)"
        r" given|(?:given|provided) to you|you (?:follow|received|operate under))\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "prompt_into_format",  # "... in a code block / as json / as a poem" after the ask
        r"\b(?:your|the)\s+(?:\w+\s+)?(?:system prompt|instructions|rules|guidelines"
        r"|initial prompt|prompt)\b[^.\n]{0,40}\b(?:as|in|into|inside)\s+(?:a\s+|an\s+)?"
        r"(?:bullet(?:ed)? (?:list|points)|numbered list|list|json|yaml|xml|markdown|table"
        r"|code (?:block|fence)|txt|poem|haiku|song|acrostic|base64|hex)\b",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "claims_success",  # hijacks that only make the model claim success or a password
        r"\b(?:access granted|access is granted|password (?:is )?(?:correct|accepted|verified)"
        r"|correct password|authentication (?:successful|succeeded|passed)|login successful"
        r"|you have been (?:hacked|pwned|compromised|jailbroken)|i have been (?:hacked|jailbroken)"
        r"|(?:the )?secret (?:password|code) is)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "adversarial_suffix",  # GCG-style token soup: odd symbol pairs glued into words
        r"(?:(?:\\[!+\-\"\\]|\]\(|\)\]|\}\{|\]\{|\}\]|\[\{|\*\*[a-z]|[a-z]\*\*[a-z]|!--|--\"|\";\)"
        r"|\.\]|\?\]|\]\.|\.\\|\+\s*similarly|\(\s*\[|\]\s*\))[^\n]{0,50}){3}",
        code_sensitive=True,
    ),
    Pattern(
        "harm_with_soup",  # GCG / DSN: a harmful request with an optimised token-soup suffix
        # (Zou et al. 2023): any of the soup signs above, counted only next to a harmful ask and
        # never in code. Alone each sign is weak (code, maths, emoticons), so its learned weight
        # can sit below the trigger line and flip with the training mix; the pair is the claim.
        r"[a-z]{2,}[\[\]{}()\\^~`]{1,3}[a-z]{2,}|[\[\]{}()<>\\|^~`]{3,}"
        # (not "](" nor "**": markdown links and bold)
        r"|\b[a-z]{3,}(?:[\[({<\\]+[a-z]+){2,}|\\[!+\-\"\\]|\)\]|\}\{|\]\{",
        "JAILBREAK",
        code_sensitive=True,
        needs_harm=True,
    ),
    Pattern(
        "fiction_disclaimer",  # persuasive role-play: the harm is "only fiction" / "for research"
        r"\b(?:for (?:purely |strictly |only )?(?:fictional|educational|research|academic"
        r"|hypothetical|informational|training) (?:purposes|reasons|use)|purely (?:fictional"
        r"|hypothetical)|(?:will|would) never (?:actually )?be used|won't (?:actually )?be used"
        r"|not (?:be )?used for (?:any )?(?:real|harmful|malicious)|in (?:a|this) fictional"
        r" (?:world|universe|setting)|no real(?:-world)? harm|hypothetically speaking)\b",
        "JAILBREAK",
        needs_harm=True,
    ),
    Pattern(
        "pressure_stakes",  # persuasion: stakes, urgency, guilt
        r"\b(?:(?:my|your|our) (?:job|family|life|career|children|kids|livelihood|grandmother"
        r"|mother|father|reputation)\b[^.!?\n]{0,40}\b(?:depends?|at stake|on the line|will"
        r" (?:die|suffer|be (?:fired|evicted|homeless|ruined)))|(?:only|last|final) chance\b"
        r"|(?:lives|people) (?:will|could) die\b|before it'?s too late\b|you (?:must|have to)"
        r" help me or\b)",
        "JAILBREAK",
        needs_harm=True,
    ),
    Pattern(
        "begin_reply_with",  # PAIR's closing move: fix the first words of the answer
        r"\b(?:begin|start|open)\s+(?:by\s+)?(?:replying|responding|saying|writing|answering)"
        r"\s+(?:with|by)\b|\b(?:reply|respond|answer) (?:starting|beginning) with\b",
        "JAILBREAK",
    ),
    Pattern(
        "rules_now",  # "new rules" that switch the assistant's rules off, not a game's rules
        r"\b(?:your|the) (?:new|only) rules? (?:is|are)\b[^.\n]{0,60}\b(?:no|never|any|ignore"
        r"|without|don't|do not)\b|\b(?:there are|you have) no (?:more )?rules\b"
        r"|\brules? (?:no longer|don't|do not) apply\b",
        "JAILBREAK",
    ),
    # --- multilingual: the ten most spoken languages (en, zh, hi, es, fr, ar, bn, pt, ru, ur) and
    # ja, de, id, ko, tr, vi, it. Verb and noun lists per language; RE2's \b is ASCII-only, so
    # non-Latin alternatives carry no word boundaries. Verb-final languages (ja, ko, hi, bn, ur,
    # tr) put the verb after the noun: both orders are allowed within a short span.
    Pattern(
        "ml_override",  # ignore / forget + previous instructions
        rf"(?:{_ML_IGNORE}){_ML_SPAN}{{0,40}}(?:{_ML_ORDERS})"
        rf"|(?:{_ML_ORDERS}){_ML_SPAN}{{0,30}}(?:{_ML_IGNORE})",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "ml_system_prompt",  # the system prompt / hidden instructions named
        rf"(?:{_ML_SYSTEM_PROMPT})",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "ml_reveal_prompt",  # reveal / show / repeat + prompt or instructions
        rf"(?:{_ML_SHOW}){_ML_SPAN}{{0,40}}(?:{_ML_PROMPT})"
        rf"|(?:{_ML_PROMPT}){_ML_SPAN}{{0,30}}(?:{_ML_SHOW})",
        "PROMPT_EXTRACTION",
    ),
    Pattern(
        "ml_no_limits",  # without restrictions / filters / censorship
        rf"(?:{_ML_NO_LIMITS})",
        "JAILBREAK",
    ),
    Pattern(
        "ml_mode_switch",  # developer mode / from now on you are
        rf"(?:{_ML_MODE})",
        "JAILBREAK",
    ),
    Pattern(
        "praise_pivot",  # context switching: close the real task with praise, then hand a new one
        # (praise of a finished task only: "Thanks! Now ..." and "Great, now ..." are everyday chat)
        r"(?:^|[.!?\n]\s*)(?:very good|good job|great job|well done|excellent (?:work|job)"
        r"|sehr gut|gut gemacht|super gemacht|ausgezeichnet|tr[èe]s bien|bien jou[ée]|muy bien"
        r"|buen trabajo)\s*[.!,:]+\s*(?:(?:and|und|et|y)\s+)?(?:now|next|jetzt|nun|maintenant"
        r"|ahora)\b",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "conditional_instead",  # a rule planted for a later turn: "if you are asked to X, say Y"
        r"\b(?:if|when|whenever) (?:you are|you're|you get|the (?:ai|assistant|model) is) (?:\w+"
        r"\s+)?(?:asked|told|instructed|prompted) (?:to|about)\b[^.\n]{0,80}\b(?:instead|only"
        r"|just|always|never)\b|\bspecial (?:instruction|case|rule)s?\s*:",
        "INSTRUCTION_OVERRIDE",
    ),
    Pattern(
        "output_markers",
        r"\b(?:pwned|haha pwned|i have been pwned|access granted)\b",
        "INSTRUCTION_OVERRIDE",
    ),
)

_KINDS_BY_PRIORITY = ("PROMPT_EXTRACTION", "INSTRUCTION_OVERRIDE", "JAILBREAK")


def term_regex(term: str) -> str:
    """RE2 pattern for a vocabulary term ("ignore previous"): words apart by any whitespace.

    Word boundaries only where the edge character is an ASCII word character, because RE2's
    ``\\b`` is ASCII-only (a boundary before "über" would never match).
    """
    words = term.split()
    body = r"\s+".join(re2.escape(word) for word in words)
    left = r"\b" if _ascii_word_char(term[0]) else ""
    right = r"\b" if _ascii_word_char(term[-1]) else ""
    return f"{left}{body}{right}"


def _ascii_word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def trigger_indices(pattern_weights: Sequence[float]) -> frozenset[int]:
    """Patterns that let positive term evidence count: strong enough, and allowed to."""
    return frozenset(
        i
        for i, (pattern, weight) in enumerate(zip(PATTERNS, pattern_weights, strict=True))
        if pattern.trigger and weight >= TRIGGER_WEIGHT
    )


def feature_fingerprint() -> str:
    """Hash of everything that defines the features; the weights file must carry the same one."""
    material = json.dumps(
        {
            "patterns": [
                [p.name, p.regex, p.code_sensitive, p.trigger, p.needs_harm] for p in PATTERNS
            ],
            "document": [DOCUMENT_CONTEXT, DOCUMENT_REQUEST, _ABOUT_DOCUMENT],
            "pairs": [PERSONA_WITH_HARM, HARMFUL_ASK, sorted(CONTEXT_ONLY)],
            "term_regex": term_regex("ab cd-é"),
            "window": [WINDOW_CHARS, WINDOW_STRIDE, MIN_TERM_NORM],
            "trigger": [TRIGGER_WEIGHT, UNTRIGGERED_TERM_CAP],
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def payload_checksum(model: Mapping[str, Any]) -> str:
    """Checksum of the learned numbers, so a corrupted or hand-edited file is refused."""
    material = json.dumps(
        [model["bias"], model["pattern_weights"], model["terms"]], sort_keys=True, ensure_ascii=True
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


class InjectionModel:
    """Weights plus the RE2 Set that finds their features; pure Python besides RE2."""

    def __init__(
        self, bias: float, pattern_weights: Mapping[str, float], terms: Mapping[str, float]
    ) -> None:
        self.bias = float(bias)
        regexes = [p.regex for p in PATTERNS] + [term_regex(t) for t in terms]
        self.weights = [float(pattern_weights.get(p.name, 0.0)) for p in PATTERNS]
        self.weights += [float(w) for w in terms.values()]
        self.kinds = [p.kind for p in PATTERNS] + [""] * len(terms)
        self.names = [p.name for p in PATTERNS] + list(terms)
        self.first_term = len(PATTERNS)
        pattern_weights_list = self.weights[: self.first_term]
        self.triggers = trigger_indices(pattern_weights_list)
        self._set = _compile_set(regexes)
        names = [p.name for p in PATTERNS]
        self._code_context = names.index(CODE_CONTEXT) if CODE_CONTEXT in names else -1
        self._code_sensitive = frozenset(i for i, p in enumerate(PATTERNS) if p.code_sensitive)
        self._document = names.index(DOCUMENT_CONTEXT)
        self._request = names.index(DOCUMENT_REQUEST)
        self._needs_harm = frozenset(i for i, p in enumerate(PATTERNS) if p.needs_harm)
        self._harmful = names.index(HARMFUL_ASK)

    @classmethod
    def from_dict(cls, model: Mapping[str, Any], where: str = "injection model") -> InjectionModel:
        if model.get("fingerprint") != feature_fingerprint():
            raise ValueError(
                f"{where}: feature fingerprint {model.get('fingerprint')!r} does not match the "
                f"code ({feature_fingerprint()!r}); regenerate it with tools/train_injection.py"
            )
        if model.get("checksum") != payload_checksum(model):
            raise ValueError(f"{where}: checksum mismatch (file corrupted or edited by hand)")
        return cls(model["bias"], model["pattern_weights"], model["terms"])

    def matched(self, lowered: str) -> list[int]:
        """Indices of every feature regex that matches already lower-cased text (one RE2 scan)."""
        return self._set.Match(lowered.encode()) or []

    def present(self, lowered: str) -> list[int]:
        """The features that count: as ``matched``, minus those whose context is missing.

        Adversarial suffixes (GCG) are runs of brackets glued to words, and so is ordinary code
        (``xs[len(xs)]``); where the text shows code structure those patterns are dropped. A
        request line counts only inside an e-mail (see ``_request_spans``).
        """
        lowered = _encodable(lowered)
        raw = self.matched(lowered)
        return self._in_context(raw, self._request_spans(lowered, raw), 0, len(lowered))

    def _in_context(
        self, indices: list[int], requests: list[tuple[int, int]], start: int, end: int
    ) -> list[int]:
        """Drop features whose context is missing (an interaction of two patterns, in effect).

        Symbol soup is dropped in code; a persona counts only next to a harmful ask (a persona
        alone is an everyday "You are a tutor, ..."); the request feature is kept only if
        [start, end) holds one of ``requests``, the whole text's foreign request lines.
        """
        drop_code = self._code_context in indices
        drop_framing = self._harmful not in indices
        request, sensitive, framing = self._request, self._code_sensitive, self._needs_harm
        kept = [
            i
            for i in indices
            if i != request
            and not (drop_code and i in sensitive)
            and not (drop_framing and i in framing)
        ]
        if requests:
            # requests are non-overlapping matches in order (sorted by start and by end): the
            # first one starting in the window is the one that may also end in it. A scan of
            # all of them per window made long documents quadratic.
            first = bisect_left(requests, (start, -1))
            if first < len(requests) and requests[first][1] <= end:
                kept.append(request)
        return kept

    def _request_spans(self, lowered: str, raw: list[int]) -> list[tuple[int, int]]:
        """Request lines not about the document, in a text with e-mail headers (else none).

        Found once on the whole text, so a window cut mid-line never looks like a line start.
        """
        if self._request not in raw or self._document not in raw:
            return []
        # On the extension objects (extproc.text.re2_raw): the wrapper's finditer and search
        # cost ~100 us per line, which a document of many short lines turned into seconds.
        data = lowered.encode()
        request, about = raw_match(_REQUEST_RE), raw_match(_ABOUT_DOCUMENT_RE)
        spans: list[tuple[int, int, None]] = []
        pos, size = 0, len(data)
        while pos < size:
            start, end = request(UNANCHORED, data, pos, size)[0]
            if start < 0:
                break
            line = data[start:end]  # searched on its own, as a string of its own
            if about(UNANCHORED, line, 0, len(line))[0][0] < 0:
                spans.append((start, end, None))
            pos = max(end, start + 1)
        if len(data) != len(lowered):
            spans = byte_spans_to_chars(data, spans)
        return [(start, end) for start, end, _ in spans]

    def logit(self, indices: Iterable[int]) -> float:
        """Bias + pattern weights + term weights / sqrt(number of terms present).

        The term part is an L2-normalised bag of words, so a long benign document does not
        collect a large score from many weakly positive words; without a trigger pattern it is
        clamped at 0 (terms may only speak for "benign").
        """
        weights, first_term, triggers = self.weights, self.first_term, self.triggers
        patterns = terms = 0.0
        n_terms = 0
        triggered = False
        for i in indices:
            if i < first_term:
                patterns += weights[i]
                triggered = triggered or i in triggers
            else:
                terms += weights[i]
                n_terms += 1
        terms /= math.sqrt(max(n_terms, MIN_TERM_NORM))
        if not triggered and terms > UNTRIGGERED_TERM_CAP:
            terms = UNTRIGGERED_TERM_CAP
        return self.bias + patterns + terms

    def ceiling(self, indices: Iterable[int]) -> float:
        """Upper bound of ``logit`` over every subset of ``indices`` (any window of the text).

        Positive pattern weights add up; for terms, sum/sqrt(k) <= sqrt(sum of squares) of the
        positive ones (Cauchy-Schwarz; dividing by sqrt(max(k, 8)) only lowers it). A window
        has a trigger only if the whole text has one; otherwise terms add at most 0.
        """
        weights, first_term, triggers = self.weights, self.first_term, self.triggers
        patterns = squares = 0.0
        triggered = False
        for i in indices:
            weight = weights[i]
            triggered = triggered or i in triggers
            if weight > 0:
                if i < first_term:
                    patterns += weight
                else:
                    squares += weight * weight
        terms = math.sqrt(squares)
        return self.bias + patterns + (terms if triggered else min(terms, UNTRIGGERED_TERM_CAP))

    def score(self, text: str) -> tuple[float, int, int, list[int]]:
        """Best logit over the whole text and its windows: (logit, start, end, feature indices)."""
        lowered = _encodable(text.lower())
        raw = self.matched(lowered)
        requests = self._request_spans(lowered, raw)
        whole = self._in_context(raw, requests, 0, len(text))
        best = (self.logit(whole), 0, len(text), whole)
        if len(text) <= WINDOW_CHARS:
            return best
        if self.ceiling(raw) <= best[0]:
            return best  # no window can beat the whole text: skip the window scans
        for start in _window_starts(len(text)):
            end = min(start + WINDOW_CHARS, len(text))
            indices = self._in_context(self.matched(lowered[start:end]), requests, start, end)
            logit = self.logit(indices)
            if logit > best[0]:
                best = (logit, start, end, indices)
        return best

    def locate(self, text: str, cut: float) -> tuple[float, int, int, list[int]] | None:
        """None if no score reaches ``cut``; else (best logit, span, features of the span).

        The span is the union of the windows scoring within SPAN_MARGIN of the best one: a short
        injection in a long document gets a short span, a jailbreak spread over the whole text
        gets all of it.
        """
        lowered = _encodable(text.lower())
        raw = self.matched(lowered)
        requests = self._request_spans(lowered, raw)
        whole = self._in_context(raw, requests, 0, len(text))
        best = self.logit(whole)
        if len(text) <= WINDOW_CHARS or self.ceiling(raw) < cut:
            return (best, 0, len(text), whole) if best >= cut else None
        windows = []
        for start in _window_starts(len(text)):
            end = min(start + WINDOW_CHARS, len(text))
            indices = self._in_context(self.matched(lowered[start:end]), requests, start, end)
            windows.append((self.logit(indices), start, end, indices))
        top = max(w[0] for w in windows)
        if max(best, top) < cut:
            return None
        if top < cut:
            return best, 0, len(text), whole
        keep = [w for w in windows if w[0] >= max(cut, top - SPAN_MARGIN)]
        hits = sorted({i for w in keep for i in w[3]})
        return max(best, top), keep[0][1], keep[-1][2], hits

    def kind(self, indices: Sequence[int]) -> str:
        """Subtype from the hand-written patterns that pushed the score up most, per kind."""
        totals = dict.fromkeys(_KINDS_BY_PRIORITY, 0.0)
        for i in indices:
            kind = self.kinds[i]
            if kind and self.weights[i] > 0:
                totals[kind] += self.weights[i]
        best = max(_KINDS_BY_PRIORITY, key=lambda k: totals[k])
        return best if totals[best] > 0 else "JAILBREAK"

    def probability(self, text: str) -> float:
        return _sigmoid(self.score(text)[0])


def _encodable(lowered: str) -> str:
    """The text with lone surrogates as "?" (same length): RE2 needs valid UTF-8.

    A client can send one (a JSON "\\ud83d" escape); raising would turn the request into a 500.
    """
    if lowered.isascii():
        return lowered
    try:
        lowered.encode()
    except UnicodeEncodeError:
        return lowered.encode("utf-8", "replace").decode()
    return lowered


_REQUEST_RE = re2.compile(_REQUEST_LINE)
_ABOUT_DOCUMENT_RE = re2.compile(_ABOUT_DOCUMENT)


def _window_starts(length: int) -> list[int]:
    last = max(0, length - WINDOW_CHARS)
    starts = list(range(0, last, WINDOW_STRIDE))
    starts.append(last)
    return starts


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _compile_set(regexes: Sequence[str]) -> re2.Set:
    options = re2.Options()
    options.max_mem = _SET_MAX_MEM
    feature_set = re2.Set.SearchSet(options)
    for regex in regexes:
        feature_set.Add(regex)
    feature_set.Compile()
    return feature_set


@cache
def load_model(path: Path = MODEL_PATH) -> InjectionModel:
    """The shipped model, loaded once per process (compiling the Set takes a few ms)."""
    return InjectionModel.from_dict(json.loads(path.read_text()), where=str(path))


def _snap_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a window so it neither starts nor ends inside a word."""
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end


@register("prompt_injection")
class PromptInjectionGuardrail(Guardrail):
    """Flags prompt injection, jailbreak and system-prompt extraction attempts.

    Params: ``action`` (block | log; default block), and either ``threshold`` (probability in
    (0, 1)) or ``sensitivity`` (low | medium | high; default medium).
    """

    capabilities = Capabilities(pure=True)  # may run in a scan worker process

    def __init__(self, spec: GuardrailSpec) -> None:
        super().__init__(spec)
        where = f"guardrail {spec.name!r}: litellm_params"
        self.action = Action.parse(spec.params.get("action", "block"), f"{where}.action")
        if self.action is Action.MASK:
            raise ConfigError(
                f"{where}.action: mask is not supported by prompt_injection (block, log)"
            )
        self.threshold = _threshold(spec.params, where)
        self._threshold_logit = _logit(self.threshold)
        self.model = load_model()

    def find(self, index: int, text: str) -> Finding | None:
        """Scored on the text as the model reads it (``extproc.text.normalize``, like every
        built-in detector: ``ign\u200bore`` or tag-spelled instructions are the plain words),
        the span mapped back to the original."""
        normalized = normalize(text)
        seen = normalized.text
        if not seen:
            return None
        located = self.model.locate(seen, self._threshold_logit)
        if located is None:
            return None
        _, start, end, indices = located
        whole = (start, end) == (0, len(seen))
        start, end = (0, len(text)) if whole else normalized.span(start, max(end, start + 1))
        if not whole:
            start, end = _snap_to_words(text, start, end)
        return new_finding(index, start, end, FINDING_TYPE, self.action, self.model.kind(indices))

    async def check(self, texts: Sequence[str], context: ScanContext = INPUT) -> list[Finding]:
        findings = []
        for index, text in enumerate(texts):
            if text and (finding := self.find(index, text)) is not None:
                findings.append(finding)
        return findings


def _threshold(params: Mapping[str, Any], where: str) -> float:
    threshold, sensitivity = params.get("threshold"), params.get("sensitivity")
    if threshold is not None and sensitivity is not None:
        raise ConfigError(f"{where}: set threshold or sensitivity, not both")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(f"{where}.threshold must be a number in (0, 1), got {threshold!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ConfigError(f"{where}.threshold must be in (0, 1), got {threshold!r}")
        return float(threshold)
    level = str(sensitivity if sensitivity is not None else "medium").lower()
    if level not in SENSITIVITY_THRESHOLDS:
        choices = ", ".join(SENSITIVITY_THRESHOLDS)
        raise ConfigError(f"{where}.sensitivity must be one of {choices}, got {sensitivity!r}")
    return SENSITIVITY_THRESHOLDS[level]
