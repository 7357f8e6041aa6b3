#!/usr/bin/env python3
"""Generate the sample PDFs shipped in samples/pdf/.

All texts below were written for this project as fictional sample data and are
released together with the project (CC0 / public domain).

Usage (from the repository root):

    .venv/bin/python samples/make_pdfs.py

Produces:
    samples/pdf/annual-report-2025.pdf          (English, 3 pages)
    samples/pdf/reglament-obrabotki-obrashchenij.pdf  (Russian, 3 pages)

Every page has its own distinct content, so page-level chunking and page
citations can be tested. The output is deterministic: the creation date and
metadata are fixed, so repeated runs produce byte-identical files.

Requires fpdf2 and the DejaVu Sans TrueType fonts (Debian/Ubuntu package
``fonts-dejavu-core``). A different font directory can be given with the
environment variable ``SAMPLES_FONT_DIR``.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "pdf"
FIXED_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)

FONT_DIR_CANDIDATES = [
    os.environ.get("SAMPLES_FONT_DIR", ""),
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/Library/Fonts",
]

# Each document is a list of pages; each page is a list of blocks:
#   ("h1", text)  - document title (only on page 1)
#   ("h2", text)  - section heading
#   ("p", text)   - paragraph
#   ("li", text)  - bullet item
#   ("table", [[header...], [row...], ...], (relative column widths))

ANNUAL_REPORT = {
    "file": "annual-report-2025.pdf",
    "lang": "en",
    "title": "Northwind Analytics - Annual Report 2025",
    "subject": "Fictional annual report used as sample data",
    "footer": "Northwind Analytics - Annual Report 2025 - fictional sample document",
    "pages": [
        # ---------------- Page 1: overview and CEO letter ----------------
        [
            ("h1", "Northwind Analytics Annual Report 2025"),
            ("h2", "Company Overview"),
            (
                "p",
                "Northwind Analytics is a data and software company that helps "
                "mid-sized retailers and logistics operators forecast demand, plan "
                "inventory and measure the effect of promotions. Founded in 2014 in "
                "Rotterdam, the company now employs 312 people in five offices and "
                "serves 640 business customers in 19 countries. Our main product, "
                "Northwind Forecast, is delivered as a cloud subscription; a smaller "
                "consulting unit helps customers prepare their data and train "
                "planning teams.",
            ),
            ("h2", "Letter from the Chief Executive Officer"),
            ("p", "Dear shareholders, colleagues and partners,"),
            (
                "p",
                "2025 was the year in which Northwind moved from being a forecasting "
                "tool to being a planning platform. We released the Replenishment "
                "module in April, opened our office in Warsaw in June and signed our "
                "largest contract so far with a grocery chain of more than 900 "
                "stores. Customers told us that they want fewer dashboards and more "
                "answers, so we invested in explainable recommendations that show "
                "planners why an order quantity was suggested.",
            ),
            (
                "p",
                "We also made our working model more flexible. Two thirds of our "
                "colleagues now work in a hybrid arrangement, and our employee "
                "engagement score rose from 71 to 78 points. I am grateful to every "
                "team member for a year of focused, careful work, and to our "
                "customers for their trust and their candid feedback.",
            ),
            ("p", "Sincerely, Maria Jansen, Chief Executive Officer"),
            ("h2", "Highlights of the Year"),
            ("li", "Replenishment module launched; adopted by 140 customers by December."),
            ("li", "Customer retention (net revenue retention) of 112 percent."),
            ("li", "New office in Warsaw with 38 engineers and analysts."),
            ("li", "ISO/IEC 27001 certification renewed without major findings."),
        ],
        # ---------------- Page 2: financial results ----------------
        [
            ("h2", "Financial Results 2025"),
            (
                "p",
                "Revenue grew 18% to 42.7 million euros, compared with 36.2 million "
                "euros in 2024. Subscription revenue accounted for 35.9 million euros, "
                "or 84 percent of the total, while consulting and training "
                "contributed 6.8 million euros. Annual recurring revenue at year end "
                "reached 39.4 million euros.",
            ),
            (
                "p",
                "Gross margin improved to 74.5 percent from 71.8 percent, mainly "
                "because cloud hosting costs per customer fell after we moved the "
                "forecasting engine to a more efficient compute setup. Operating "
                "profit (EBIT) was 5.1 million euros, an operating margin of 11.9 "
                "percent, up from 3.4 million euros a year earlier. Net profit "
                "amounted to 3.8 million euros.",
            ),
            ("h2", "Key Figures"),
            (
                "table",
                [
                    ["Indicator", "2025", "2024", "Change"],
                    ["Revenue, EUR million", "42.7", "36.2", "+18%"],
                    ["Subscription revenue, EUR million", "35.9", "29.8", "+20%"],
                    ["Gross margin", "74.5%", "71.8%", "+2.7 pp"],
                    ["Operating profit (EBIT), EUR million", "5.1", "3.4", "+50%"],
                    ["Net profit, EUR million", "3.8", "2.5", "+52%"],
                    ["Free cash flow, EUR million", "6.2", "4.0", "+55%"],
                    ["Employees at year end", "312", "268", "+44"],
                ],
                (3, 1, 1, 1),
            ),
            ("h2", "Cash Flow and Balance Sheet"),
            (
                "p",
                "Free cash flow was 6.2 million euros. Cash and cash equivalents at "
                "31 December 2025 stood at 18.9 million euros, and the company has no "
                "financial debt. Capital expenditure of 1.4 million euros was spent "
                "mostly on the new Warsaw office and on laptops for new hires. "
                "Research and development expenses were 9.6 million euros, or 22.5 "
                "percent of revenue.",
            ),
            (
                "p",
                "The Board proposes a dividend of 0.35 euros per share, to be paid "
                "in May 2026 after approval by the general meeting.",
            ),
        ],
        # ---------------- Page 3: outlook and risks ----------------
        [
            ("h2", "Outlook for 2026"),
            (
                "p",
                "For 2026 management expects revenue between 49 and 51 million euros "
                "and an operating margin of 12 to 14 percent. Growth will come from "
                "selling the Replenishment module to existing customers, from the "
                "Central European market served by the Warsaw office, and from a new "
                "partnership with two enterprise resource planning vendors. We plan "
                "to hire about 45 people, most of them in engineering and customer "
                "success.",
            ),
            (
                "p",
                "Our product roadmap focuses on natural language questions over "
                "planning data, automated detection of anomalies in sales, and "
                "scenario planning for supply disruptions.",
            ),
            ("h2", "Principal Risks"),
            (
                "li",
                "Customer concentration: the ten largest customers generate 31 "
                "percent of revenue. Losing one of them would slow growth.",
            ),
            (
                "li",
                "Cybersecurity: we hold sales and inventory data of many customers. "
                "A breach could cause financial and reputational damage. Mitigation: "
                "ISO/IEC 27001 controls, annual penetration tests, hardware-key "
                "multi-factor authentication.",
            ),
            (
                "li",
                "Talent market: competition for data scientists remains intense, "
                "and salary inflation in our markets was above 6 percent.",
            ),
            (
                "li",
                "Cloud costs and vendor dependence: most workloads run on one cloud "
                "provider; a price increase would reduce gross margin.",
            ),
            (
                "li",
                "Regulation: new rules on artificial intelligence in the European "
                "Union require documentation and transparency for automated "
                "recommendations.",
            ),
            (
                "li",
                "Currency: about 14 percent of revenue is invoiced in Polish zloty, Swedish krona and British pounds.",
            ),
            ("h2", "Forward-looking Statements"),
            (
                "p",
                "This report contains statements about future developments that are "
                "based on current expectations of management. Actual results may "
                "differ materially. Northwind Analytics is a fictional company and "
                "all figures in this document are invented for demonstration "
                "purposes.",
            ),
        ],
    ],
}

REGLAMENT = {
    "file": "reglament-obrabotki-obrashchenij.pdf",
    "lang": "ru",
    "title": "Регламент обработки обращений клиентов ООО «Северный ветер»",
    "subject": "Вымышленный регламент, демонстрационный пример",
    "footer": "Регламент обработки обращений - вымышленный демонстрационный документ",
    "pages": [
        # ---------------- Страница 1: общие положения ----------------
        [
            ("h1", "Регламент обработки обращений клиентов"),
            (
                "p",
                "ООО «Северный ветер». Утверждён приказом генерального директора "
                "№ 8-П от 20 января 2026 г. Вымышленный документ, составлен как "
                "демонстрационный пример.",
            ),
            ("h2", "1. Общие положения"),
            (
                "p",
                "1.1. Настоящий Регламент устанавливает порядок приёма, регистрации, "
                "рассмотрения обращений клиентов и контрагентов Общества, а также "
                "подготовки ответов на них.",
            ),
            (
                "p",
                "1.2. Обращением считается письменное или электронное заявление, "
                "предложение, жалоба или запрос информации, поступившие в Общество "
                "от физического или юридического лица.",
            ),
            (
                "p",
                "1.3. Обращения принимаются следующими способами: почтовым "
                "отправлением по адресу Общества, по электронной почте, через форму "
                "обратной связи на сайте, а также лично в офисе в рабочее время.",
            ),
            (
                "p",
                "1.4. Устные обращения по телефону фиксируются сотрудником "
                "клиентской службы в системе учёта и рассматриваются в том же "
                "порядке, что и письменные.",
            ),
            (
                "p",
                "1.5. Все обращения регистрируются в журнале обращений в день "
                "поступления. Обращению присваивается регистрационный номер, который "
                "сообщается заявителю.",
            ),
            (
                "p",
                "1.6. Анонимные обращения, не содержащие сведений для ответа, "
                "регистрируются, но ответ на них не направляется. Сведения о "
                "возможных нарушениях из таких обращений передаются руководителю "
                "службы качества.",
            ),
            (
                "p",
                "1.7. Персональные данные заявителей обрабатываются в соответствии "
                "с Политикой Общества в отношении обработки персональных данных.",
            ),
        ],
        # ---------------- Страница 2: сроки рассмотрения ----------------
        [
            ("h2", "2. Сроки рассмотрения обращений"),
            (
                "p",
                "2.1. Обращение рассматривается в течение 30 календарных дней со дня "
                "его регистрации, если иной срок не установлен настоящим Регламентом "
                "или договором с клиентом.",
            ),
            (
                "p",
                "2.2. Обращения, касающиеся качества поставленного товара или "
                "нарушения сроков поставки, рассматриваются в сокращённый срок — "
                "не более 10 рабочих дней.",
            ),
            (
                "p",
                "2.3. Запросы о статусе заказа и о наличии товара на складе рассматриваются в течение 2 рабочих дней.",
            ),
            (
                "p",
                "2.4. Если для ответа требуется проверка у поставщика, экспертиза "
                "или запрос документов у третьих лиц, срок рассмотрения может быть "
                "продлён не более чем на 30 календарных дней. Заявитель письменно "
                "уведомляется о продлении с указанием причины.",
            ),
            (
                "p",
                "2.5. Обращение, направленное не по адресу, в течение 3 рабочих дней "
                "передаётся в подразделение, к компетенции которого оно относится.",
            ),
            ("h2", "Таблица сроков"),
            (
                "table",
                [
                    ["Вид обращения", "Срок ответа"],
                    ["Общее обращение, предложение", "30 календарных дней"],
                    ["Жалоба на качество товара", "10 рабочих дней"],
                    ["Претензия по договору", "15 календарных дней"],
                    ["Запрос о статусе заказа", "2 рабочих дня"],
                    ["Повторное обращение", "10 рабочих дней"],
                ],
                (3, 2),
            ),
            (
                "p",
                "2.6. Срок исчисляется со дня, следующего за днём регистрации. Если "
                "последний день срока приходится на нерабочий день, днём окончания "
                "срока считается ближайший следующий рабочий день.",
            ),
        ],
        # ---------------- Страница 3: ответственность и контроль ----------------
        [
            ("h2", "3. Ответственность и контроль"),
            (
                "p",
                "3.1. Ответственность за своевременное и полное рассмотрение "
                "обращения несёт исполнитель, назначенный руководителем "
                "подразделения, а также сам руководитель подразделения.",
            ),
            (
                "p",
                "3.2. Общий контроль за соблюдением Регламента осуществляет "
                "руководитель службы качества. Он еженедельно проверяет журнал "
                "обращений и направляет напоминания по обращениям, срок ответа по "
                "которым истекает в течение 3 рабочих дней.",
            ),
            (
                "p",
                "3.3. Ежемесячно служба качества готовит отчёт для генерального "
                "директора: количество обращений по видам, доля ответов, данных в "
                "срок, типичные причины жалоб и предложения по их устранению.",
            ),
            (
                "p",
                "3.4. За нарушение сроков рассмотрения обращений, предоставление "
                "заявителю недостоверной информации или разглашение сведений из "
                "обращения работники привлекаются к дисциплинарной ответственности "
                "в соответствии с трудовым законодательством и локальными актами "
                "Общества.",
            ),
            (
                "p",
                "3.5. Заявитель, не согласный с ответом, вправе направить повторное "
                "обращение на имя генерального директора. Повторное обращение "
                "рассматривается комиссией в составе не менее трёх человек, не "
                "участвовавших в рассмотрении первоначального обращения.",
            ),
            ("p", "3.6. Документы по обращениям хранятся 5 лет, после чего уничтожаются по акту."),
            ("h2", "4. Заключительные положения"),
            (
                "p",
                "4.1. Регламент вступает в силу со дня утверждения. Изменения "
                "вносятся приказом генерального директора. Служба качества "
                "пересматривает Регламент не реже одного раза в год.",
            ),
        ],
    ],
}


def find_font_dir() -> Path:
    for cand in FONT_DIR_CANDIDATES:
        if cand and (Path(cand) / "DejaVuSans.ttf").is_file() and (Path(cand) / "DejaVuSans-Bold.ttf").is_file():
            return Path(cand)
    sys.exit("DejaVuSans.ttf / DejaVuSans-Bold.ttf not found; install fonts-dejavu-core or set SAMPLES_FONT_DIR")


class SamplePDF(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("DejaVu", size=8)
        self.set_text_color(110)
        self.cell(0, 8, f"{self.footer_text} - {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)


def build(doc: dict, font_dir: Path) -> Path:
    pdf = SamplePDF(format="A4")
    pdf.footer_text = doc["footer"]
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_font("DejaVu", "", str(font_dir / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(font_dir / "DejaVuSans-Bold.ttf"))

    # Fixed metadata -> byte-stable output.
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(doc["title"])
    pdf.set_author("Sample corpus (fictional)")
    pdf.set_subject(doc["subject"])
    pdf.set_creator("samples/make_pdfs.py")
    pdf.set_producer("fpdf2")
    pdf.set_lang(doc["lang"])

    for page_no, blocks in enumerate(doc["pages"], start=1):
        pdf.add_page()
        for kind, content, *extra in blocks:
            if kind == "h1":
                pdf.set_font("DejaVu", "B", 17)
                pdf.multi_cell(0, 9, content, align="L", new_x="LMARGIN", new_y="NEXT")
                pdf.ln(3)
            elif kind == "h2":
                pdf.ln(2)
                pdf.set_font("DejaVu", "B", 13)
                pdf.multi_cell(0, 7, content, align="L", new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            elif kind == "p":
                pdf.set_font("DejaVu", "", 10.5)
                pdf.multi_cell(0, 5.6, content, align="L", new_x="LMARGIN", new_y="NEXT")
                pdf.ln(2)
            elif kind == "li":
                pdf.set_font("DejaVu", "", 10.5)
                pdf.set_x(pdf.l_margin + 4)
                pdf.multi_cell(0, 5.6, "- " + content, align="L", new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            elif kind == "table":
                pdf.set_font("DejaVu", "", 10)
                with pdf.table(text_align="LEFT", line_height=6.5, col_widths=extra[0]) as table:
                    for row in content:
                        r = table.row()
                        for value in row:
                            r.cell(value)
                pdf.ln(3)
            else:
                raise ValueError(f"unknown block kind {kind!r}")
        if pdf.page_no() != page_no:
            raise RuntimeError(f"{doc['file']}: content of page {page_no} overflowed onto another page")

    out = OUT_DIR / doc["file"]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return out


def main() -> None:
    font_dir = find_font_dir()
    for doc in (ANNUAL_REPORT, REGLAMENT):
        path = build(doc, font_dir)
        print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
