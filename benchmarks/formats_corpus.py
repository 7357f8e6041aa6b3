# ruff: noqa: E501  (the corpus is data: one sentence a line)
"""A small known-item evaluation set of structured documents, written for this project (English and Russian).

Supply contracts (DOCX, written with python-docx), company policies (HTML and Markdown), all with numbered
sections. Contracts of one language share their structure and wording and differ in their facts, so
a query has to reach the right section of the right contract. Each query names one answer: a sentence
of one section. ``write_corpus(DIR)`` writes ``docs/`` (the files), ``queries.jsonl``, ``qrels/test.tsv``
(BEIR layout, corpus ids = file names) and ``answers.jsonl`` (query id, file, answer sentence, section).
The files are generated deterministically from the data below; nothing binary is committed.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

Section = tuple[int, str, list[str]]  # (level, heading, paragraphs); level 0 is the title


@dataclass(frozen=True)
class Doc:
    name: str  # file name, with the suffix that picks the format
    sections: list[Section]


@dataclass(frozen=True)
class Query:
    qid: str
    text: str
    doc: str
    answer: str  # a sentence of the document, verbatim


EN_CONTRACTS = [
    # supplier, buyer, goods, city, delivery days, acceptance days, payment days, penalty %, cap %,
    # warranty months, replacement days, term years, notice days, court
    ("Northwind Pumps Ltd", "Contoso Water LLC", "centrifugal pumps", "Kazan", 14, 3, 30, "0.1", 10, 24, 10, 3, 60,
     "London Court of International Arbitration"),
    ("Fabrikam Steel plc", "Tailspin Construction Inc", "reinforcing steel bars", "Rotterdam", 21, 5, 45, "0.05", 5,
     12, 20, 2, 90, "Commercial Court of Rotterdam"),
    ("Litware Medical GmbH", "Margie Clinics Ltd", "ultrasound scanners", "Vienna", 30, 10, 60, "0.2", 15, 36, 5, 5,
     30, "Vienna International Arbitral Centre"),
    ("Adatum Solar SA", "Woodgrove Energy AG", "photovoltaic panels", "Lyon", 45, 7, 15, "0.15", 8, 120, 30, 4, 120,
     "Paris Commercial Court"),
    ("Proseware Foods Oy", "Alpine Markets Ltd", "frozen berries", "Tampere", 2, 1, 20, "0.5", 20, 1, 2, 1, 14,
     "District Court of Helsinki"),
    ("Blue Yonder Paper Co", "Lucerne Print House", "coated paper rolls", "Lucerne", 10, 4, 35, "0.08", 6, 6, 15, 2,
     45, "Commercial Court of the Canton of Zurich"),
]  # fmt: skip


def en_contract(n: int, c: tuple) -> tuple[Doc, list[Query]]:
    sup, buy, goods, city, dd, ad, pd, pen, cap, wm, rd, ty, nd, court = c
    delivery = f"The Supplier delivers the {goods} to the Buyer's warehouse in {city} within {dd} calendar days of a confirmed order."
    acceptance = f"The Buyer inspects the {goods} within {ad} working days of delivery and signs the acceptance certificate or sends a written list of defects."
    payment = f"The Buyer pays each invoice for the {goods} within {pd} days of acceptance by bank transfer."
    penalty = f"For each day of delay in delivering the {goods}, the Supplier pays a penalty of {pen}% of the value of the late goods, capped at {cap}% of that value."
    warranty = f"The Supplier warrants the {goods} for {wm} months from acceptance and replaces a defective unit within {rd} days of a claim."
    term = f"This agreement for the supply of {goods} runs for {ty} years and either party may end it with {nd} days' written notice."
    disputes = f"Disputes under this agreement for {goods} that negotiation does not settle go to the {court}."
    sections: list[Section] = [
        (0, f"Supply Agreement No. {n}", [f"This agreement is made between {sup} (the Supplier) and {buy} (the Buyer)."]),
        (1, "1. Subject", [f"The Supplier sells and the Buyer buys {goods} as listed in Annex 1, which states quantities and prices."]),
        (1, "2. Obligations of the Parties", []),
        (2, "2.1 Delivery", [delivery, "Transport and insurance are at the Supplier's expense until the goods are unloaded."]),
        (2, "2.2 Acceptance", [acceptance, "Goods not rejected in that time are deemed accepted."]),
        (2, "2.3 Payment", [payment, "Prices are fixed for the term of this agreement and include packaging."]),
        (1, "3. Liability", []),
        (2, "3.1 Late Delivery", [penalty, "The penalty does not release the Supplier from delivering the goods."]),
        (2, "3.2 Warranty", [warranty, "The warranty does not cover wear or damage caused by improper storage."]),
        (1, "4. Term and Termination", [term, "Orders confirmed before termination are still delivered and paid."]),
        (1, "5. Disputes", [disputes, "The law of the Supplier's country governs this agreement."]),
    ]  # fmt: skip
    name = f"contracts/en/supply-{n}.docx"
    q = f"en-c{n}"
    queries = [
        Query(f"{q}-delivery", f"How many days does delivery of {goods} to {city} take?", name, delivery),
        Query(f"{q}-penalty", f"penalty per day of late delivery of {goods}", name, penalty),
        Query(f"{q}-warranty", f"warranty period for {goods} and replacement of defective units", name, warranty),
    ]
    if n % 2:
        queries.append(Query(f"{q}-court", f"which court settles disputes about the {goods} contract", name, disputes))
    else:
        queries.append(Query(f"{q}-payment", f"payment deadline for invoices for {goods}", name, payment))
    return Doc(name, sections), queries


RU_CONTRACTS = [
    # поставщик, покупатель, товар (вин. падеж), город, дни поставки, дни приёмки, дни оплаты, неустойка %,
    # гарантия мес., срок лет, суд
    ("ООО «Уралмаш-Сервис»", "АО «Северная верфь»", "судовые дизельные генераторы", "Архангельск", 60, 5, 30, "0,1",
     18, 3, "Арбитражный суд Архангельской области"),
    ("ООО «Агроторг»", "ООО «Хлебный дом»", "продовольственное зерно", "Самару", 7, 2, 10, "0,3", 6, 1,
     "Арбитражный суд Самарской области"),
    ("АО «Кабельный завод»", "ООО «Энергомонтаж»", "силовые кабели", "Новосибирск", 20, 3, 45, "0,05", 36, 2,
     "Арбитражный суд Новосибирской области"),
    ("ООО «Фармлайн»", "ГБУЗ «Областная больница»", "лекарственные препараты", "Тверь", 5, 1, 60, "0,2", 12, 1,
     "Арбитражный суд Тверской области"),
]  # fmt: skip


def ru_contract(n: int, c: tuple) -> tuple[Doc, list[Query]]:
    sup, buy, goods, city, dd, ad, pd, pen, wm, ty, court = c
    delivery = f"Поставщик доставляет {goods} на склад Покупателя в город {city} в течение {dd} календарных дней с даты подтверждения заявки."
    acceptance = f"Покупатель проверяет {goods} в течение {ad} рабочих дней после поставки и подписывает акт приёмки либо направляет перечень недостатков."
    payment = f"Покупатель оплачивает {goods} в течение {pd} дней с даты подписания акта приёмки банковским переводом."
    penalty = f"За каждый день просрочки поставки Поставщик уплачивает неустойку в размере {pen}% от стоимости не поставленных в срок товаров ({goods})."
    warranty = f"Гарантийный срок на {goods} составляет {wm} месяцев с даты приёмки."
    disputes = (
        f"Споры по договору поставки, которые стороны не урегулировали переговорами, рассматриваются в суде: {court}."
    )
    sections: list[Section] = [
        (0, f"Договор поставки № {n}-П", [f"{sup} (Поставщик) и {buy} (Покупатель) заключили настоящий договор."]),
        (1, "1. Предмет договора", [f"Поставщик передаёт, а Покупатель принимает и оплачивает {goods} по спецификации (Приложение 1)."]),
        (1, "2. Обязанности сторон", []),
        (2, "2.1 Поставка", [delivery, "Расходы на транспорт и страхование до разгрузки несёт Поставщик."]),
        (2, "2.2 Приёмка", [acceptance, "Товар, не отклонённый в этот срок, считается принятым."]),
        (2, "2.3 Оплата", [payment, "Цены фиксированы на весь срок действия договора."]),
        (1, "3. Ответственность сторон", []),
        (2, "3.1 Неустойка", [penalty, "Уплата неустойки не освобождает Поставщика от исполнения обязательств."]),
        (2, "3.2 Гарантия", [warranty, "Гарантия не распространяется на повреждения из-за неправильного хранения."]),
        (1, "4. Срок действия договора", [f"Договор действует {ty} года с даты подписания и продлевается, если ни одна сторона не заявит о расторжении."]),
        (1, "5. Разрешение споров", [disputes, "К договору применяется право Российской Федерации."]),
    ]  # fmt: skip
    name = f"contracts/ru/postavka-{n}.docx"
    q = f"ru-c{n}"
    queries = [
        Query(f"{q}-delivery", f"срок доставки: {goods}, {city}", name, delivery),
        Query(f"{q}-penalty", f"неустойка за просрочку поставки, {goods}", name, penalty),
        Query(f"{q}-warranty", f"гарантийный срок: {goods}", name, warranty),
    ]
    return Doc(name, sections), queries


POLICIES: list[tuple[Doc, list[tuple[str, str, str]]]] = [
    (
        Doc(
            "policies/travel-policy.html",
            [
                (1, "Business Travel Policy", ["This policy applies to all employees travelling on company business."]),
                (
                    2,
                    "1. Booking",
                    [
                        "Flights and hotels are booked through the corporate travel portal at least 14 days before departure.",
                        "Bookings made later need the approval of a department head.",
                    ],
                ),
                (
                    2,
                    "2. Class of Travel",
                    [
                        "Economy class is used for flights under six hours; business class is allowed for longer flights.",
                        "Rail travel in first class is allowed for journeys over three hours.",
                    ],
                ),
                (
                    2,
                    "3. Per Diem",
                    [
                        "The daily allowance for meals is 60 euros within the EU and 80 euros elsewhere.",
                        "No allowance is paid for days on which meals are provided by a host.",
                    ],
                ),
                (
                    3,
                    "3.1 Hotels",
                    ["Hotel costs are reimbursed up to 180 euros per night in capital cities and 130 euros elsewhere."],
                ),
                (
                    2,
                    "4. Expense Reports",
                    [
                        "Expense reports with original receipts are submitted within 10 working days after return.",
                        "Late reports are reimbursed only with the approval of the finance director.",
                    ],
                ),
            ],
        ),  # fmt: skip
        [
            (
                "en-p-travel-perdiem",
                "daily meal allowance when travelling outside the EU",
                "The daily allowance for meals is 60 euros within the EU and 80 euros elsewhere.",
            ),
            (
                "en-p-travel-hotel",
                "maximum hotel cost per night in a capital city",
                "Hotel costs are reimbursed up to 180 euros per night in capital cities and 130 euros elsewhere.",
            ),
            (
                "en-p-travel-class",
                "when may employees fly business class",
                "Economy class is used for flights under six hours; business class is allowed for longer flights.",
            ),
            (
                "en-p-travel-report",
                "deadline for submitting travel expense reports with receipts",
                "Expense reports with original receipts are submitted within 10 working days after return.",
            ),
        ],  # fmt: skip
    ),
    (
        Doc(
            "policies/information-security.html",
            [
                (1, "Information Security Policy", ["This policy protects the company's information and systems."]),
                (
                    2,
                    "1. Passwords",
                    [
                        "Passwords have at least 14 characters and are changed only when a compromise is suspected.",
                        "Multi-factor authentication is mandatory for e-mail and remote access.",
                    ],
                ),
                (
                    2,
                    "2. Devices",
                    [
                        "Company laptops use full-disk encryption and lock the screen after 5 minutes of inactivity.",
                        "Personal devices may access e-mail only through the managed mobile application.",
                    ],
                ),
                (
                    2,
                    "3. Incidents",
                    [
                        "A lost device or a suspected breach is reported to the service desk within one hour.",
                        "The security team decides on containment and informs the data protection officer.",
                    ],
                ),
                (
                    2,
                    "4. Backups",
                    [
                        "Servers are backed up every night and backups are kept for 35 days in a second data centre.",
                        "A restore test is carried out every quarter.",
                    ],
                ),
            ],
        ),  # fmt: skip
        [
            (
                "en-p-sec-password",
                "minimum password length",
                "Passwords have at least 14 characters and are changed only when a compromise is suspected.",
            ),
            (
                "en-p-sec-lock",
                "screen lock timeout on company laptops",
                "Company laptops use full-disk encryption and lock the screen after 5 minutes of inactivity.",
            ),
            (
                "en-p-sec-incident",
                "how quickly must a lost laptop be reported",
                "A lost device or a suspected breach is reported to the service desk within one hour.",
            ),
            (
                "en-p-sec-backup",
                "how long are server backups retained",
                "Servers are backed up every night and backups are kept for 35 days in a second data centre.",
            ),
        ],  # fmt: skip
    ),
    (
        Doc(
            "policies/remote-work.md",
            [
                (
                    1,
                    "Remote Work Policy",
                    ["Employees may work remotely when their role allows it and their manager agrees."],
                ),
                (
                    2,
                    "1. Eligibility",
                    ["Employees who have completed their probation period may work remotely up to three days a week."],
                ),
                (
                    2,
                    "2. Equipment",
                    [
                        "The company provides a laptop, a monitor and a headset; office chairs are reimbursed up to 250 euros once every five years."
                    ],
                ),
                (
                    2,
                    "3. Working Hours",
                    ["Core hours are from 10:00 to 15:00 local time, when employees are reachable by chat and phone."],
                ),
                (
                    2,
                    "4. Working Abroad",
                    [
                        "Working from another country is limited to 20 working days a year and needs HR approval in advance."
                    ],
                ),
            ],
        ),  # fmt: skip
        [
            (
                "en-p-remote-days",
                "how many days a week can I work from home",
                "Employees who have completed their probation period may work remotely up to three days a week.",
            ),
            (
                "en-p-remote-chair",
                "reimbursement for an office chair at home",
                "The company provides a laptop, a monitor and a headset; office chairs are reimbursed up to 250 euros once every five years.",
            ),
            (
                "en-p-remote-abroad",
                "working remotely from another country limit",
                "Working from another country is limited to 20 working days a year and needs HR approval in advance.",
            ),
        ],  # fmt: skip
    ),
    (
        Doc(
            "policies/komandirovki.md",
            [
                (1, "Положение о служебных командировках", ["Положение распространяется на всех работников компании."]),
                (
                    2,
                    "1. Оформление командировки",
                    ["Командировка оформляется приказом не позднее чем за 5 рабочих дней до выезда."],
                ),
                (
                    2,
                    "2. Суточные",
                    [
                        "Суточные выплачиваются в размере 700 рублей за каждый день командировки по России и 2500 рублей за границей."
                    ],
                ),
                (
                    2,
                    "3. Проживание",
                    [
                        "Расходы на гостиницу возмещаются в пределах 5000 рублей в сутки, в Москве и Санкт-Петербурге — 8000 рублей."
                    ],
                ),
                (
                    2,
                    "4. Авансовый отчёт",
                    [
                        "Авансовый отчёт с подтверждающими документами сдаётся в бухгалтерию в течение 3 рабочих дней после возвращения."
                    ],
                ),
            ],
        ),  # fmt: skip
        [
            (
                "ru-p-kom-sutochnye",
                "размер суточных в командировке по России",
                "Суточные выплачиваются в размере 700 рублей за каждый день командировки по России и 2500 рублей за границей.",
            ),
            (
                "ru-p-kom-hotel",
                "лимит расходов на гостиницу в Москве",
                "Расходы на гостиницу возмещаются в пределах 5000 рублей в сутки, в Москве и Санкт-Петербурге — 8000 рублей.",
            ),
            (
                "ru-p-kom-report",
                "срок сдачи авансового отчёта после командировки",
                "Авансовый отчёт с подтверждающими документами сдаётся в бухгалтерию в течение 3 рабочих дней после возвращения.",
            ),
        ],  # fmt: skip
    ),
    (
        Doc(
            "policies/zashchita-informatsii.html",
            [
                (
                    1,
                    "Политика информационной безопасности",
                    ["Политика определяет правила защиты информации компании."],
                ),
                (2, "1. Пароли", ["Пароль должен содержать не менее 12 символов, включая цифры и специальные знаки."]),
                (
                    2,
                    "2. Инциденты",
                    [
                        "О потере ноутбука или подозрении на взлом сотрудник сообщает в службу поддержки в течение 30 минут."
                    ],
                ),
                (2, "3. Резервное копирование", ["Резервные копии баз данных создаются ежедневно и хранятся 90 дней."]),
            ],
        ),  # fmt: skip
        [
            (
                "ru-p-ib-password",
                "минимальная длина пароля",
                "Пароль должен содержать не менее 12 символов, включая цифры и специальные знаки.",
            ),
            (
                "ru-p-ib-incident",
                "куда сообщить о потере ноутбука",
                "О потере ноутбука или подозрении на взлом сотрудник сообщает в службу поддержки в течение 30 минут.",
            ),
            (
                "ru-p-ib-backup",
                "сколько хранятся резервные копии",
                "Резервные копии баз данных создаются ежедневно и хранятся 90 дней.",
            ),
        ],  # fmt: skip
    ),
]


def corpus() -> tuple[list[Doc], list[Query]]:
    docs: list[Doc] = []
    queries: list[Query] = []
    for n, c in enumerate(EN_CONTRACTS, start=1):
        d, qs = en_contract(n, c)
        docs.append(d)
        queries += qs
    for n, c in enumerate(RU_CONTRACTS, start=1):
        d, qs = ru_contract(n, c)
        docs.append(d)
        queries += qs
    for d, qs in POLICIES:
        docs.append(d)
        queries += [Query(qid, text, d.name, answer) for qid, text, answer in qs]
    return docs, queries


def _docx(doc: Doc) -> bytes:
    import io

    import docx

    document = docx.Document()
    for level, heading, paragraphs in doc.sections:
        document.add_heading(heading, level)
        for p in paragraphs:
            document.add_paragraph(p)
    document.core_properties.created = document.core_properties.modified = datetime(2026, 1, 1)  # no clock in the file
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _html(doc: Doc) -> bytes:
    title = doc.sections[0][1]
    body = []
    for level, heading, paragraphs in doc.sections:
        body.append(f"<h{level}>{html.escape(heading)}</h{level}>")
        body += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
    nav = '<nav><a href="/">Intranet</a> | <a href="/policies">Policies</a></nav>'
    page = (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<script>window.analytics = {{}};</script></head>\n<body>{nav}<main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )
    return page.encode()


def _markdown(doc: Doc) -> bytes:
    parts = []
    for level, heading, paragraphs in doc.sections:
        parts.append(f"{'#' * level} {heading}")
        parts += paragraphs
    return ("\n\n".join(parts) + "\n").encode()


def write_corpus(out: Path) -> tuple[list[Doc], list[Query]]:
    docs, queries = corpus()
    writers = {".docx": _docx, ".html": _html, ".md": _markdown}
    for d in docs:
        path = out / "docs" / d.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(writers[path.suffix](d))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps({"_id": q.qid, "text": q.text}, ensure_ascii=False) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in queries:
            f.write(f"{q.qid}\t{q.doc}\t1\n")
    with (out / "answers.jsonl").open("w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps({"_id": q.qid, "doc": q.doc, "answer": q.answer}, ensure_ascii=False) + "\n")
    return docs, queries
