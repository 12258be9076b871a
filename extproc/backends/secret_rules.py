"""Provider key formats for the ``secrets`` guardrail, as RE2 patterns.

Each pattern marks the secret itself with ``(?P<v>...)`` (the span that gets masked) and may mark
the random part after a fixed prefix with ``(?P<b>...)``; the body is what the placeholder checks
look at (``ghp_`` + 36 x's is documentation, not a token).

The full patterns are never joined into one regex (their counted repetitions would make a DFA of
hundreds of MB). Each rule names short *triggers* instead, mostly its literal prefix; the detector
searches the text once for all triggers (a small, fast DFA) and runs a rule's patterns only on a
bounded window at each trigger, so the cost is linear in the text whatever the input.

Formats come from the providers' documented token layouts (prefixes, lengths, alphabets). Rules
that have no distinctive prefix use a fixed infix (``-us1`` of Mailchimp, ``:AA`` of Telegram) or
require a nearby keyword (``sumo...access_id``) instead.
"""

from __future__ import annotations

from dataclasses import dataclass

# A token boundary for alphabets that include '-' (where \b does not help): one extra character
# is consumed and trimmed later through the (?P<v>...) group.
END = r"(?:[^A-Za-z0-9_-]|$)"
B64 = r"A-Za-z0-9+/"
B64URL = r"A-Za-z0-9_\-"
ASSIGN = r"""["']?[ \t]*(?:[:?]{0,3}=|:|=>)[ \t]*["'`]?"""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # stable upper-case subtype
    patterns: tuple[str, ...]  # RE2, each with a (?P<v>...) group and maybe (?P<b>...)
    # Short RE2 snippets (literal prefixes, mostly) of which every match contains one: the
    # detector searches only for these, then tries ``patterns`` near each occurrence.
    triggers: tuple[str, ...]
    # what the body must look like: "token" = random (not a placeholder, not uniform),
    # "password" = not a placeholder (human-chosen, may be short), "none" = the format is enough,
    # "entropy" = no format at all: random-looking base64 (see ``secrets.HIGH_ENTROPY_BITS``)
    check: str = "token"
    mixed_case: bool = False  # body must not be a lowercase hex digest (content hash, not a key)
    needs_upper_lower_digit: bool = False  # short legacy formats that otherwise match words
    back: int = 0  # how far before its trigger a match may start (0: the match starts there)
    reach: int = 640  # how far after the trigger's start a match may end
    # RE2 for a closing line the finding extends to when it follows (PEM blocks); found by a
    # memoised forward search, so many openings without a closing one stay linear.
    footer: str | None = None


def _kw(keyword: str) -> str:
    """A case-insensitive identifier containing ``keyword``, then an assignment operator."""
    return rf"(?i:[A-Za-z0-9_.-]*{keyword}[A-Za-z0-9_.-]*){ASSIGN}"


RULES: tuple[Rule, ...] = (
    Rule(
        "AWS_ACCESS_KEY",
        (r"\b(?P<v>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])(?P<b>[A-Z0-9]{16}))\b",),
        (r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])",),
    ),
    Rule(
        "AWS_SECRET_KEY",
        (_kw(r"aws_?secret_?(?:access_?)?key") + rf"(?P<v>(?P<b>[{B64}]{{40}})){END}",),
        (r"(?i:aws_?secret)",),
        back=64,
        reach=160,
    ),
    Rule(
        "AWS_BEDROCK_API_KEY",
        (
            rf"\b(?P<v>ABSK(?P<b>[{B64}]{{109,269}}={{0,2}}))",
            rf"\b(?P<v>bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t(?P<b>[{B64}=&%]*))",
        ),
        (r"\bABSK", r"\bbedrock-api-key-"),
        check="none",
        reach=2048,
    ),
    Rule("GCP_API_KEY", (rf"\b(?P<v>AIza(?P<b>[{B64URL}]{{35}}))",), (r"\bAIza",)),
    Rule(
        "GCP_OAUTH_SECRET",
        (
            rf"\b(?P<v>GOCSPX-(?P<b>[{B64URL}]{{28}}))",
            rf"\b(?P<v>ya29\.(?P<b>[{B64URL}]{{30,300}}))",
        ),
        (r"\bGOCSPX-", r"\bya29\."),
    ),
    Rule(
        "GCP_SERVICE_ACCOUNT",
        (r"""(?P<v>"type"\s*:\s*"service_account")""",),
        (r"""\"type"\s*:\s*"service_account\"""",),
        check="none",
    ),
    Rule(
        "AZURE_STORAGE_KEY",
        (rf"(?i:AccountKey|SharedAccessKey)\s*=\s*(?P<v>(?P<b>[{B64}]{{40,100}}={{0,2}}))",),
        (r"(?i:AccountKey|SharedAccessKey)\s*=",),
    ),
    Rule(
        "AZURE_SAS_TOKEN",
        (r"[?&]sig=(?P<v>(?P<b>[A-Za-z0-9%+/]{40,200}(?:%3[Dd]|=){0,2}))",),
        (r"[?&]sig=",),
    ),
    Rule(
        "AZURE_AD_CLIENT_SECRET",
        (r"(?:^|[^A-Za-z0-9_~.-])(?P<v>[A-Za-z0-9_~.]{3}\dQ~(?P<b>[A-Za-z0-9_~.-]{31,34}))" + END,),
        (r"[0-9]Q~",),
        back=5,
        reach=48,
    ),
    Rule(
        "GITHUB_TOKEN",
        (r"\b(?P<v>gh[pousr]_(?P<b>[A-Za-z0-9]{36,255}))\b", r"\b(?P<v>github_pat_(?P<b>\w{82}))"),
        (r"\bgh[pousr]_", r"\bgithub_pat_"),
    ),
    Rule(
        "GITLAB_TOKEN",
        (
            rf"\b(?P<v>glpat-(?P<b>[{B64URL}]{{20}}(?:\.[0-9a-z]{{2}}\.[0-9a-z]{{7}})?)){END}",
            rf"\b(?P<v>glpat-(?P<b>[{B64URL}]{{27,300}}\.[0-9a-z]{{2}}[0-9a-z]{{7}})){END}",
            rf"\b(?P<v>gl(?:dt|rt|soat|cbt|ffct|ft|oas)-(?P<b>[{B64URL}.]{{20,64}})){END}",
            rf"\b(?P<v>glimt-(?P<b>[{B64URL}]{{25}})){END}",
            rf"\b(?P<v>glptt-(?P<b>[{B64URL}]{{40}})){END}",
            rf"\b(?P<v>glagent-(?P<b>[{B64URL}]{{50,300}})){END}",
            rf"\b(?P<v>GR1348941(?P<b>[{B64URL}]{{20,50}})){END}",
        ),
        (r"\bgl(?:pat|dt|rt|soat|cbt|ffct|ft|oas|imt|ptt|agent)-", r"\bGR1348941"),
    ),
    Rule(
        "SLACK_TOKEN",
        (
            # the numeric workspace/user ids are not random: only the last part is checked
            r"\b(?P<v>xox[abeoprs]-(?:[0-9]{5,14}-)+(?P<b>[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*))",
            r"\b(?P<v>xoxe(?:\.xox[bp])?-[0-9]-(?P<b>[A-Za-z0-9]{100,300}))",
            r"\b(?P<v>xapp-[0-9]-(?P<b>[A-Z0-9]{8,20}-[0-9]{8,20}-[A-Za-z0-9]{32,128}))",
        ),
        (r"\bxox[abeoprs][-.]", r"\bxapp-"),
    ),
    Rule(
        "SLACK_WEBHOOK",
        (
            r"(?P<v>hooks\.slack\.com/(?:services|workflows|triggers)/"
            r"(?P<b>[A-Za-z0-9_/+-]{20,200}))",
        ),
        (r"hooks\.slack\.com/",),
    ),
    Rule(
        "STRIPE_KEY",
        (
            r"\b(?P<v>(?:sk|rk)_(?:live|test)_(?P<b>[A-Za-z0-9]{20,255}))\b",
            r"\b(?P<v>whsec_(?P<b>[A-Za-z0-9]{32,64}))\b",
        ),
        (r"\b[sr]k_(?:live|test)_", r"\bwhsec_"),
    ),
    Rule(
        "ANTHROPIC_API_KEY",
        (rf"\b(?P<v>sk-ant-(?:api|admin)[0-9]{{2}}-(?P<b>[{B64URL}]{{80,120}}AA)){END}",),
        (r"\bsk-ant-",),
    ),
    Rule(
        "OPENAI_API_KEY",
        (
            rf"\b(?P<v>sk-(?:(?:proj|svcacct|admin)-)?"
            rf"(?P<b>[{B64URL}]{{20,120}}T3BlbkFJ[{B64URL}]{{20,120}})){END}",
            rf"\b(?P<v>sk-(?:proj|svcacct|admin)-(?P<b>[{B64URL}]{{80,300}})){END}",
        ),
        # "T3BlbkFJ" (base64 of "OpenAI") sits inside legacy keys: no trigger on bare "sk-".
        (r"\bsk-(?:proj|svcacct|admin)-", "T3BlbkFJ"),
        back=136,
        reach=400,
    ),
    Rule(
        "PRIVATE_KEY",
        (r"(?P<v>-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)",),
        (r"-----BEGIN",),
        check="none",
        footer=r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----",
    ),
    Rule(
        "JWT",
        (
            rf"\b(?P<v>ey(?P<b>J[{B64URL}]{{10,1000}}={{0,2}}\.eyJ[{B64URL}]{{10,}}={{0,2}}"
            rf"(?:\.[{B64URL}]*)?))",
        ),
        (r"\beyJ",),
        reach=8192,
    ),
    Rule(
        "URL_CREDENTIALS",
        (
            r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:@/?#\"'<>`]{1,64}:"
            r"(?P<v>(?P<b>[^\s@/?#\"'<>`]{1,128}))@[A-Za-z0-9\[]",
        ),
        ("://",),
        check="password",
        back=22,
        reach=200,
    ),
    Rule(
        "CURL_CREDENTIALS",
        (
            # man curl: -u/--user and -U/--proxy-user <user:password> (the short options also
            # with the value attached: -ualice:...), --oauth2-bearer <token>.
            r"\bcurl(?:[ \t](?:[^\n\\]|\\.|\\\n){0,300}?)?[ \t]"
            r"(?:-[uU][ \t=]*|--(?:proxy-)?user[ \t=]+)[\"']?"
            r"[^\s:\"'$]{1,64}:[\"']?(?P<v>(?P<b>[^\s\"']{1,128}))",
            r"\bcurl(?:[ \t](?:[^\n\\]|\\.|\\\n){0,300}?)?[ \t]--oauth2-bearer[ \t=]+[\"']?"
            r"(?P<v>(?P<b>[^\s\"']{8,512}))",
        ),
        (r"\bcurl[ \t]",),
        check="password",
        reach=520,
    ),
    Rule(
        "CLI_PASSWORD",
        (
            # `docker login` reference: -p/--password <password> (--password-stdin reads it
            # from stdin: nothing to match); podman, buildah, skopeo, oras and nerdctl take the
            # same options, `helm registry login` takes --password.
            r"\b(?:docker|podman|buildah|skopeo|oras|nerdctl|helm[ \t]+registry)[ \t]+login"
            r"(?:[ \t](?:[^\n\\]|\\.|\\\n){0,300}?)?[ \t](?:-p[ \t=]*|--password[ \t=]+)[\"']?"
            r"(?P<v>(?P<b>[^\s\"']{1,128}))",
            # man sshpass: -p <password>.
            r"\bsshpass[ \t]+-p[ \t]*[\"']?(?P<v>(?P<b>[^\s\"']{1,128}))",
            # mysql(1) and mariadb: -p<password>, attached only (`-p` alone prompts for it).
            r"\b(?:mysql|mysqldump|mysqladmin|mariadb)(?:[ \t](?:[^\n\\]|\\.|\\\n){0,300}?)?"
            r"[ \t]-p(?P<v>(?P<b>[^\s\"'-][^\s\"']{0,127}))",
        ),
        (r"\blogin[ \t]", r"\bsshpass[ \t]", r"\b(?:mysql|mysqldump|mysqladmin|mariadb)[ \t]"),
        check="password",
        back=24,
        reach=520,
    ),
    Rule("TWILIO_API_KEY", (r"\b(?P<v>SK(?P<b>[0-9a-fA-F]{32}))\b",), (r"\bSK[0-9a-fA-F]{8}",)),
    Rule(
        "SENDGRID_API_KEY",
        (rf"\b(?P<v>SG\.(?P<b>[{B64URL}]{{22}}\.[{B64URL}]{{43}})){END}",),
        (r"\bSG\.",),
    ),
    Rule("NPM_TOKEN", (r"\b(?P<v>npm_(?P<b>[A-Za-z0-9]{36}))\b",), (r"\bnpm_",)),
    Rule(
        "PYPI_TOKEN",
        (rf"\b(?P<v>pypi-AgEIcHlwaS5vcmc(?P<b>[{B64URL}]{{85,300}}))",),
        (r"\bpypi-AgEI",),
    ),
    Rule(
        "ARTIFACTORY_TOKEN",
        (r"\b(?P<v>AKCp(?P<b>[A-Za-z0-9]{69}))\b", r"\b(?P<v>cmVmdGtu(?P<b>[A-Za-z0-9]{56}))\b"),
        (r"\bAKCp", r"\bcmVmdGtu"),
    ),
    Rule(
        "MAILCHIMP_API_KEY",
        (r"\b(?P<v>(?P<b>[0-9a-f]{32})-us[0-9]{1,2})\b",),
        (r"[0-9a-f]-us[0-9]",),
        back=32,
        reach=8,
    ),
    Rule(
        "SQUARE_TOKEN",
        (
            rf"\b(?P<v>sq0atp-(?P<b>[{B64URL}]{{22}})){END}",
            rf"\b(?P<v>sq0csp-(?P<b>[{B64URL}]{{43}})){END}",
            rf"\b(?P<v>EAAA(?P<b>[{B64URL}]{{60}})){END}",
        ),
        (r"\bsq0(?:atp|csp)-", r"\bEAAA"),
    ),
    Rule(
        "DISCORD_BOT_TOKEN",
        (rf"\b(?P<v>[MNO](?P<b>[{B64URL}]{{23,25}}\.[{B64URL}]{{6}}\.[{B64URL}]{{27,38}})){END}",),
        (rf"[{B64URL}]\.[{B64URL}]{{6}}\.[{B64URL}]",),
        back=27,
        reach=52,
    ),
    Rule(
        "TELEGRAM_BOT_TOKEN",
        (rf"\b(?P<v>[0-9]{{8,10}}:AA(?P<b>[{B64URL}]{{33}})){END}",),
        (r"[0-9]:AA",),
        back=10,
        reach=42,
    ),
    Rule(
        "HASHICORP_VAULT_TOKEN",
        (rf"\b(?P<v>hv[sb]\.(?P<b>[{B64URL}]{{90,300}}))", r"\b(?P<v>s\.(?P<b>[A-Za-z0-9]{24}))\b"),
        (r"\bhv[sb]\.", r"\bs\.[A-Za-z0-9]{24}"),
        needs_upper_lower_digit=True,
    ),
    Rule(
        "TERRAFORM_CLOUD_TOKEN",
        (rf"\b(?P<v>[A-Za-z0-9]{{14}}\.atlasv1\.(?P<b>[{B64URL}=]{{60,70}})){END}",),
        (r"\.atlasv1\.",),
        back=14,
        reach=90,
    ),
    Rule(
        "HUGGINGFACE_TOKEN",
        (r"\b(?P<v>hf_(?P<b>[A-Za-z]{34}))\b", r"\b(?P<v>api_org_(?P<b>[A-Za-z]{34}))\b"),
        (r"\bhf_", r"\bapi_org_"),
    ),
    Rule(
        "ONEPASSWORD_TOKEN",
        (
            rf"\b(?P<v>ops_eyJ(?P<b>[{B64}]{{250,1000}}={{0,3}}))",
            r"\b(?P<v>A3-(?P<b>[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})"
            r"-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}))\b",
        ),
        (r"\bops_eyJ", r"\bA3-[A-Z0-9]{6}-"),
        reach=1100,
    ),
    Rule(
        "AGE_SECRET_KEY",
        (r"\b(?P<v>AGE-SECRET-KEY-1(?P<b>[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}))\b",),
        (r"\bAGE-SECRET-KEY-1",),
    ),
    Rule(
        "ATLASSIAN_API_TOKEN",
        (rf"\b(?P<v>ATATT3(?P<b>[{B64URL}=]{{150,300}}))",),
        (r"\bATATT3",),
    ),
    Rule(
        "FACEBOOK_TOKEN",
        (
            r"\b(?P<v>EAA[MC](?P<b>[A-Za-z0-9]{100,400}))",
            rf"\b(?P<v>[0-9]{{15,16}}\|(?P<b>[{B64URL}]{{27}})){END}",
        ),
        (r"\bEAA[MC]", r"[0-9]{15}\|"),
        back=1,
    ),
    Rule(
        "FLYIO_TOKEN",
        (
            rf"\b(?P<v>FlyV1 fm[12][ar]?_(?P<b>[{B64}]{{100,1000}}={{0,3}}))",
            rf"\b(?P<v>fm[12][ar]?_(?P<b>[{B64}]{{100,1000}}={{0,3}}))",
            rf"\b(?P<v>fo1_(?P<b>[{B64URL}]{{43}})){END}",
        ),
        (r"\bFlyV1 ", r"\bfm[12][ar]?_", r"\bfo1_"),
        reach=1100,
    ),
    Rule(
        "GRAFANA_TOKEN",
        (
            rf"\b(?P<v>glc_(?P<b>[{B64}]{{32,400}}={{0,2}}))",
            r"\b(?P<v>glsa_(?P<b>[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}))\b",
            rf"\b(?P<v>eyJrIjoi(?P<b>[{B64}]{{70,400}}={{0,2}}))",
        ),
        (r"\bglc_", r"\bglsa_", r"\beyJ"),
    ),
    Rule(
        "HEROKU_API_KEY",
        (rf"\b(?P<v>HRKU-AA(?P<b>[{B64URL}]{{58}})){END}",),
        (r"\bHRKU-AA",),
    ),
    Rule(
        "INFRACOST_TOKEN",
        (r"\b(?P<v>ico-(?P<b>[A-Za-z0-9]{32}))\b",),
        (r"\bico-",),
        mixed_case=True,
    ),
    Rule(
        "INTRA42_SECRET",
        (r"\b(?P<v>s-s4t2(?:ud|af)-(?P<b>[a-f0-9]{64}))\b",),
        (r"\bs-s4t2",),
    ),
    Rule("NOTION_TOKEN", (r"\b(?P<v>ntn_(?P<b>[0-9]{11}[A-Za-z0-9]{35}))\b",), (r"\bntn_",)),
    Rule(
        "OCTOPUS_DEPLOY_KEY",
        (r"\b(?P<v>API-(?P<b>[A-Z0-9]{26}))\b",),
        (r"\bAPI-[A-Z0-9]{8}",),
    ),
    Rule(
        "SENTRY_TOKEN",
        (rf"\b(?P<v>sntry[su]_(?P<b>[{B64}_=]{{60,400}}))",),
        (r"\bsntry[su]_",),
    ),
    Rule(
        "SIDEKIQ_SECRET",
        (
            r"BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM"
            + ASSIGN
            + r"(?P<v>(?P<b>[a-f0-9]{8}:[a-f0-9]{8}))\b",
        ),
        (r"BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS",),
    ),
    Rule(
        "SOURCEGRAPH_TOKEN",
        (
            r"\b(?P<v>sgp_(?:[a-fA-F0-9]{16}|local)_(?P<b>[a-fA-F0-9]{40}))\b",
            r"\b(?P<v>sgp_(?P<b>[a-fA-F0-9]{40}))\b",
            _kw("sourcegraph") + r"(?P<v>(?P<b>[a-fA-F0-9]{40}))\b",
        ),
        (r"\bsgp_", r"(?i:sourcegraph)"),
        back=64,
        reach=160,
    ),
    Rule(
        "SUMOLOGIC_ACCESS_ID",
        (_kw(r"sumo[a-z_.-]{0,10}access_?id") + r"(?P<v>su(?P<b>[A-Za-z0-9]{12}))\b",),
        (r"(?i:sumo)",),
        back=64,
        reach=120,
    ),
    Rule(
        "SONAR_TOKEN",
        (
            r"\b(?P<v>sq[pua]_(?P<b>[a-f0-9]{40}))\b",
            r"(?i:sonar[A-Za-z0-9_.-]*(?:login|token|key))[ \t]*[:?]{0,3}=[ \t]*[\"']?"
            r"(?P<v>(?P<b>[A-Za-z0-9]{40}))\b",
        ),
        (r"\bsq[pua]_", r"(?i:sonar)"),
        reach=160,
    ),
    Rule(
        "MAXMIND_LICENSE_KEY",
        (r"\b(?P<v>(?P<b>[A-Za-z0-9]{6}_[A-Za-z0-9]{29})_mmk)\b",),
        (r"[A-Za-z0-9]_mmk",),
        back=35,
        reach=8,
    ),
    Rule("CLOJARS_TOKEN", (r"\b(?P<v>CLOJARS_(?P<b>[a-z0-9]{60}))\b",), (r"\bCLOJARS_",)),
    Rule(
        "SOFTLAYER_API_KEY",
        (r"api\.softlayer\.com/(?:soap|rest)/v3(?:\.1)?/(?P<v>(?P<b>[a-z0-9]{64}))\b",),
        (r"api\.softlayer\.com/",),
    ),
    Rule(
        "NUGET_PASSWORD",
        (r"<add key=\"(?i:ClearTextPassword|Password)\"\s+value=\"(?P<v>(?P<b>[^\"\n]{6,200}))\"",),
        (r"<add key=\"",),
        check="password",
    ),
    Rule(
        "OTHER_PROVIDER_TOKEN",
        (
            r"\b(?P<v>dckr_pat_(?P<b>[A-Za-z0-9_-]{27}))",
            r"\b(?P<v>shp(?:at|ca|pa|ss)_(?P<b>[a-fA-F0-9]{32}))\b",
            r"\b(?P<v>do[opr]_v1_(?P<b>[a-f0-9]{64}))\b",
            r"\b(?P<v>dp\.(?:pt|st|sa|ct|scim|audit)\.(?P<b>[A-Za-z0-9]{40,44}))\b",
            r"\b(?P<v>dapi(?P<b>[a-f0-9]{32})(?:-[0-9])?)\b",
            r"\b(?P<v>lin_(?:api|oauth)_(?P<b>[A-Za-z0-9]{40}))\b",
            r"\b(?P<v>NRAK-(?P<b>[A-Z0-9]{27}))\b",
            r"\b(?P<v>PMAK-(?P<b>[a-f0-9]{24}-[a-f0-9]{34}))\b",
            r"\b(?P<v>pul-(?P<b>[a-f0-9]{40}))\b",
            r"\b(?P<v>pscale_(?:tkn|pw|oauth)_(?P<b>[A-Za-z0-9_.=-]{32,64}))",
            r"\b(?P<v>gsk_(?P<b>[A-Za-z0-9]{52}))\b",
            r"\b(?P<v>xai-(?P<b>[A-Za-z0-9]{80}))\b",
            r"\b(?P<v>r8_(?P<b>[A-Za-z0-9]{37}))\b",
            r"\b(?P<v>pplx-(?P<b>[A-Za-z0-9]{48}))\b",
            r"\b(?P<v>pnu_(?P<b>[A-Za-z0-9]{36}))\b",
            r"\b(?P<v>rdme_(?P<b>[a-z0-9]{70}))\b",
            r"\b(?P<v>tk-us-(?P<b>[A-Za-z0-9_-]{48}))",
        ),
        (
            r"\b(?:dckr_pat_|shp(?:at|ca|pa|ss)_|do[opr]_v1_|dp\.|dapi[a-f0-9]|lin_(?:api|oauth)_)",
            r"\b(?:NRAK-|PMAK-|pul-|pscale_|gsk_|xai-|r8_|pplx-|pnu_|rdme_|tk-us-)",
        ),
    ),
    Rule(
        # detect-secrets' Base64HighEntropyString: a quoted string of key material with no
        # known prefix. Long (>= 40) and judged by entropy, so words and hex digests pass.
        "HIGH_ENTROPY_STRING",
        (r"[\"'`](?P<v>(?P<b>[A-Za-z0-9+/_-]{40,1000}={0,2}))[\"'`]",),
        (r"[\"'`][A-Za-z0-9+/_-]{40}",),
        check="entropy",
        reach=1010,
    ),
)
