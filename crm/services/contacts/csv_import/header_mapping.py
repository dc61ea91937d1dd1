"""Header mapping: the contact fields, the headers of common exports, a caller's mapping."""

from __future__ import annotations

from crm.errors import ValidationFailed

IDENTIFIER_FIELDS = ("email", "phone", "telegram_username", "telegram_id", "whatsapp_id")
FIELDS = frozenset(
    {
        "name",
        "first_name",
        "middle_name",
        "last_name",
        "title",
        "company",
        "phone",
        "email",
        "telegram_username",
        "telegram_id",
        "whatsapp_id",
        "tags",
        "notes",
        "source",
        "timezone",
        "consent",
    }
)
_IGNORE = frozenset({"", "ignore", "-"})

# Header spellings of common exports, compared after header_key (lower-case, single spaces,
# underscores as spaces). Several columns may map to one field: the first non-empty cell wins.
_ALIASES: dict[str, tuple[str, ...]] = {
    "name": (
        "name",
        "full name",
        "display name",
        "contact name",
        "person - name",
        "person name",
        "фио",
        "ф.и.о.",
        "имя и фамилия",
        "полное имя",
        "контакт",
        "контактное лицо",
    ),
    "first_name": ("first name", "given name", "firstname", "person - first name", "имя"),
    "middle_name": ("middle name", "additional name", "отчество"),
    "last_name": (
        "last name",
        "family name",
        "surname",
        "lastname",
        "person - last name",
        "фамилия",
    ),
    "title": (
        "title",
        "job title",
        "position",
        "organization 1 - title",
        "organization title",
        "person - job title",
        "должность",
    ),
    "company": (
        "company",
        "company name",
        "organization",
        "organisation",
        "organization 1 - name",
        "organization name",
        "organization - name",
        "person - organization",
        "account name",
        "компания",
        "организация",
        "название компании",
    ),
    "phone": (
        "phone",
        "phone number",
        "phone 1 - value",
        "mobile",
        "mobile phone",
        "mobile phone number",
        "person - phone",
        "person - phone - work",
        "person - phone - mobile",
        "work phone",
        "telephone",
        "телефон",
        "мобильный",
        "мобильный телефон",
        "номер телефона",
        "тел.",
    ),
    "email": (
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "e-mail 1 - value",
        "person - email",
        "person - email - work",
        "work email",
        "почта",
        "эл. почта",
        "эл.почта",
        "электронная почта",
        "емейл",
        "имейл",
    ),
    "telegram_username": (
        "telegram",
        "telegram username",
        "telegram handle",
        "телеграм",
        "телеграмм",
        "telegram ник",
        "ник в телеграм",
    ),
    "telegram_id": ("telegram id", "telegram user id", "телеграм id"),
    "whatsapp_id": ("whatsapp", "whatsapp id", "whatsapp number", "ватсап", "вотсап", "вацап"),
    "tags": (
        "tags",
        "tag",
        "labels",
        "group membership",
        "person - labels",
        "теги",
        "метки",
        "тэги",
    ),
    "notes": (
        "notes",
        "note",
        "comment",
        "comments",
        "заметки",
        "заметка",
        "комментарий",
        "комментарии",
        "примечание",
    ),
    "source": ("source", "lead source", "original source", "источник"),
    "timezone": ("timezone", "time zone", "часовой пояс"),
    "consent": ("consent", "согласие"),
    "custom.linkedin_url": ("url", "linkedin", "linkedin url", "profile url"),
}


def header_key(text: str) -> str:
    """A header as compared: lower-case, single spaces, underscores as spaces, no BOM."""
    return " ".join(text.replace("\ufeff", "").replace("_", " ").strip().strip('"').lower().split())


_AUTO_MAPPING: dict[str, str] = {
    header_key(alias): target for target, aliases in _ALIASES.items() for alias in aliases
}
for _name in FIELDS:
    _AUTO_MAPPING.setdefault(header_key(_name), _name)


def build_columns(
    header: list[str], mapping: dict[str, str] | None
) -> tuple[list[tuple[int, str, str]], set[str]]:
    """The mapped columns (index, field, header) and the mapping keys found in the header."""
    columns: list[tuple[int, str, str]] = []
    found: set[str] = set()
    for index, text in enumerate(header):
        key = header_key(text)
        if mapping is not None and key in mapping:
            found.add(key)
            target = mapping[key]
            if target in _IGNORE:
                continue
        elif key in _AUTO_MAPPING:
            target = _AUTO_MAPPING[key]
        else:
            continue
        columns.append((index, target, text.replace("\ufeff", "").strip()))
    return columns, found


def check_mapping(mapping: dict[str, str] | None) -> dict[str, str] | None:
    """A caller's mapping checked and keyed by header_key; None when there is none."""
    if mapping is None:
        return None
    if not isinstance(mapping, dict):
        raise ValidationFailed("mapping", "must be an object of CSV column -> field")
    checked: dict[str, str] = {}
    for column, target in mapping.items():
        if not isinstance(column, str) or not isinstance(target, str):
            raise ValidationFailed("mapping", "column names and fields must be strings")
        target = target.strip()
        if target.lower() in _IGNORE:
            target = ""
        elif target.startswith("custom."):
            key = target[7:].strip()
            if not key or len(key) > 64:
                raise ValidationFailed("mapping", f"'{target}': a custom field needs a short key")
            target = "custom." + key
        elif target not in FIELDS:
            allowed = ", ".join(sorted(FIELDS))
            raise ValidationFailed(
                "mapping", f"'{target}' is not a field; use one of {allowed}, custom.<key>"
            )
        checked[header_key(column)] = target
    return checked
