"""The documents of the answer-quality suite (benchmarks/quality_suite.py holds the items that ask
about them): their text and the writers that put each on disk, the same bytes every run, offline.

Pages are short (150-250 words) so SmolLM2-135M on two CPU cores reads the full suite in minutes.
Filler sentences hold no numbers or names, so every gold answer is in one place only. No line
repeats on every page: the app drops such lines as running headers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian's fonts-dejavu-core
PAGE_WORDS = {"en": 170, "de": 150, "fr": 160}  # filler is added to a page's own sentences up to this many words
CREATED = datetime(2024, 6, 1, tzinfo=UTC)

FILLER = {
    "en": """
The board met regularly during the year and reviewed the progress of every major project.
Managers were asked to keep travel to a minimum and to hold routine meetings by video call.
An external firm reviewed our internal controls and recommended clearer approval rules for purchases.
Customer feedback remained positive, although several clients asked for faster replies from the help desk.
We continued to invest in training, with courses on project management, safety and data protection.
The finance team introduced monthly forecasts, which gave managers an earlier view of costs.
Energy use per unit produced fell again thanks to better insulation and more efficient machines.
The company renewed its quality certification after a three-day audit without major findings.
Our procurement team negotiated longer contracts with key suppliers to reduce price swings.
Several teams moved to a shared planning tool, which made dependencies between projects easier to see.
The works council and management agreed on flexible working hours for most office staff.
Shipping delays eased in the second half of the year, and stock levels returned to normal.
We published our first sustainability statement and set targets for waste and water use.
The internal newsletter now reports on every department, so colleagues know what others are working on.
Investments in software were kept modest, with the focus on tools that remove manual work.
Warranty claims stayed low, which suggests that the changes to final testing are working.
The legal department reviewed all standard contracts and simplified the terms for small customers.
A mentoring programme pairs new employees with experienced colleagues during their first months.
Marketing spending shifted from printed brochures to trade fairs and online demonstrations.
The audit committee discussed the accounting of development costs and approved the chosen method.
Customers increasingly ask for long service agreements rather than one-off purchases.
Office space was reorganised so that teams that work together also sit together.
We replaced the old telephone system, which had become expensive to maintain.
Cash collection improved because invoices are now sent on the day of delivery.
The board thanks all employees for their commitment during a demanding year.
Suppliers were asked to confirm that they follow our code of conduct on labour and the environment.
A review of the product range removed variants that sold in very small numbers.
The help desk now answers most questions on the same day, a clear improvement on earlier years.
Inventory counts at the end of the year matched the accounts within narrow limits.
The company takes part in several industry groups that work on common technical standards.
""",
    "de": """
Der Aufsichtsrat hat sich im Berichtsjahr regelmäßig über die Lage des Unternehmens informiert.
Die Zusammenarbeit mit den Gemeinden im Versorgungsgebiet verlief vertrauensvoll und ohne Störungen.
Die Kundinnen und Kunden nutzen zunehmend das Online-Portal, um Zählerstände zu melden.
Für die Beschäftigten wurden neue Schulungen zu Arbeitssicherheit und Datenschutz angeboten.
Die Preise für Strom und Gas blieben für Haushaltskunden das ganze Jahr über stabil.
Die Instandhaltung der Leitungsnetze erfolgte planmäßig und wurde ohne größere Unterbrechungen abgeschlossen.
Das Kundenzentrum in der Innenstadt hat seine Öffnungszeiten am Samstag verlängert.
Mehrere Ausbildungsplätze konnten erneut mit jungen Menschen aus der Region besetzt werden.
Die Wirtschaftsprüfer haben den Jahresabschluss geprüft und einen uneingeschränkten Vermerk erteilt.
Im Fuhrpark wurden weitere Dieselfahrzeuge durch elektrische Fahrzeuge ersetzt.
Die Nachfrage nach Beratung zum Energiesparen ist im Laufe des Jahres deutlich gestiegen.
Die Verwaltung hat zahlreiche Abläufe digitalisiert und Papierformulare weitgehend abgeschafft.
Bei Bauarbeiten im Straßenraum stimmt sich das Unternehmen eng mit der Stadtverwaltung ab.
Die Störungsstelle ist rund um die Uhr erreichbar und wurde personell verstärkt.
Die Beschaffung von Material war schwieriger als früher, führte aber zu keinen Verzögerungen.
Das Unternehmen unterstützt Vereine und Schulen in der Region mit Spenden und Projekten.
Die Geschäftsleitung dankt allen Mitarbeiterinnen und Mitarbeitern für ihren großen Einsatz.
Die Rücklagen wurden maßvoll erhöht, um künftige Investitionen absichern zu können.
Der Betriebsrat und die Geschäftsführung haben eine neue Vereinbarung zum mobilen Arbeiten geschlossen.
Die Messgeräte in den Haushalten werden schrittweise durch digitale Zähler ersetzt.
""",
    "fr": """
Le conseil scientifique s'est réuni régulièrement pour suivre l'avancement des projets.
Les équipes ont poursuivi leurs travaux malgré la hausse du prix de l'énergie et des matières premières.
Plusieurs doctorants ont soutenu leur thèse et ont rejoint des entreprises de la région.
La sécurité des laboratoires a fait l'objet d'un audit, qui n'a relevé aucun écart important.
Les résultats ont été présentés lors de conférences internationales et publiés dans des revues reconnues.
Le service administratif a simplifié les procédures d'achat pour les petites commandes.
Les ateliers ouverts au public ont attiré de nombreux visiteurs, notamment des élèves du lycée voisin.
Une partie des équipements anciens a été remplacée par des appareils plus économes en énergie.
Les chercheurs ont consacré une part croissante de leur temps à des projets menés avec l'industrie.
La bibliothèque de l'institut propose désormais l'accès en ligne à la plupart des revues spécialisées.
Les stagiaires accueillis cette année venaient de plusieurs écoles d'ingénieurs.
La direction remercie l'ensemble du personnel pour son engagement tout au long de l'année.
Les bâtiments ont été mieux isolés, ce qui a réduit les dépenses de chauffage.
Un groupe de travail prépare une charte sur le partage des données de recherche.
Les demandes de brevet sont désormais examinées par un comité interne avant leur dépôt.
""",
}

# (title, the page's own sentences): one topic a page; the facts asked about are in these.
ANNUAL_REPORT = (
    ("Norvale Instruments annual report 2023: offices and locations",
     "Norvale Instruments is headquartered in Tallinn, Estonia, where management and the central laboratory share "
     "one building near the harbour. The Lisbon office opened in March 2019 and serves customers in Portugal and "
     "Spain. A small sales office in Riga handles orders from the Baltic states."),
    ("Revenue and results",
     "Revenue in 2023 reached 84.6 million euros, an increase of 18 percent on the previous year. Operating profit "
     "rose to 9.1 million euros. Sales of sensors made up more than half of revenue, and service contracts grew "
     "steadily. The largest customer, Baltic Rail, accounted for 14 percent of sales."),
    ("Employees",
     "At the end of 2023 Norvale Instruments employed 412 people. The Porto office opened in June 2021 and now "
     "employs 58 software engineers. Staff turnover fell, and most open positions were filled within two months."),
    ("Products",
     "The flagship product is the Aqualis sensor, which measures the quality of drinking water in real time. During "
     "the year the company launched a smaller sensor for swimming pools and stopped selling its oldest data logger. "
     "Every Aqualis unit is assembled and calibrated at the central laboratory."),
    ("Risks",
     "The main supply risk is that all optical glass comes from a single supplier, Lumetra GmbH in Jena. A second "
     "source is being qualified. Other risks are exchange rates for sales outside the euro area and attacks on our "
     "computer systems, which are tested by outside specialists."),
    ("Outlook",
     "For 2024 the board expects revenue of 97 million euros, driven by new water utilities as customers. The chief "
     "executive, Maria Kask, said that the company will keep investing in research and in its service teams."),
)  # fmt: skip
GERMAN_REPORT = (
    ("Stadtwerke Bergheim – Jahresbericht 2023: Überblick",
     "Die Stadtwerke Bergheim versorgen die Stadt und elf umliegende Gemeinden mit Strom, Wasser und Wärme. "
     "Geschäftsführerin ist seit dem Jahr 2020 Katrin Vogel. Das Unternehmen gehört vollständig der Stadt."),
    ("Wasserversorgung",
     "Das neue Wasserwerk am Mühlbach wurde im Oktober 2022 in Betrieb genommen. Es kann täglich bis zu 30.000 "
     "Kubikmeter Trinkwasser aufbereiten. Das alte Werk dient seitdem nur noch als Reserve."),
    ("Strom und Wärme",
     "Im Jahr 2023 versorgten die Stadtwerke 48.000 Haushalte mit Strom. Der Anteil erneuerbarer Energien stieg auf "
     "61 Prozent. Das Fernwärmenetz wurde um neun Kilometer verlängert."),
    ("Ausblick",
     "Bis 2026 sollen im Stadtgebiet 120 neue Ladesäulen für Elektroautos entstehen. Außerdem plant das Unternehmen "
     "einen Solarpark bei Oberau, über den der Stadtrat im Herbst entscheidet."),
)  # fmt: skip
FRENCH_REPORT = (
    ("Institut Verrier de Valmont – rapport d'activité 2023 : présentation",
     "L'Institut Verrier de Valmont étudie les verres techniques pour l'optique et l'énergie. Le directeur de "
     "l'institut est Julien Moreau. L'équipe compte une quarantaine de chercheurs et de techniciens."),
    ("Recherche",
     "En 2023, les chercheurs ont mis au point un verre qui résiste à des températures de 900 degrés. Un nouveau "
     "four électrique a été installé en septembre pour fabriquer des échantillons plus grands."),
    ("Partenariats",
     "L'institut collabore avec l'Université de Nantes depuis 2017. Deux entreprises de la région financent "
     "désormais une chaire commune consacrée au recyclage du verre."),
)  # fmt: skip


def topic_page(title: str, own: str, filler: Iterator[str], words: int) -> str:
    """A title, then paragraphs: two filler sentences, the page's own sentences, then filler up to
    `words` words, so the facts sit mid-page rather than at an edge a reader may crop."""
    before = [next(filler), next(filler)]
    after: list[str] = []
    while sum(len(text.split()) for text in (*before, own, *after)) < words:
        after.append(next(filler))
    return "\n\n".join([title, " ".join(before), own, " ".join(after)])


def filler_sentences(language: str, seed: str) -> Iterator[str]:
    """The language's filler sentences without end, in seeded rounds: each sentence once (shuffled)
    before any comes again, so no sentence is on every page."""
    pool, rng = FILLER[language].strip().splitlines(), random.Random(f"{language}/{seed}")
    while True:
        yield from rng.sample(pool, len(pool))


def topic_pages(pages: tuple[tuple[str, str], ...], language: str, seed: str) -> list[str]:
    filler = filler_sentences(language, seed)
    return [topic_page(title, own, filler, PAGE_WORDS[language]) for title, own in pages]


# The harbour log: eight entries a page, every ship named once in the whole log.
SHIP_ADJECTIVES = ("Silver", "Amber", "Coral", "Crimson", "Golden", "Quiet", "Swift", "Polar", "Iron", "Bright",
                   "Misty", "Royal", "Stormy", "Velvet", "Wild", "Green", "Ocean", "Morning", "Scarlet",
                   "Gentle")  # fmt: skip
SHIP_NOUNS = ("Heron", "Falcon", "Star", "Wave", "Tide", "Pearl", "Rose", "Dawn", "Spirit", "Crest", "Voyager",
              "Breeze", "Fjord", "Island", "Meadow", "Lynx", "Otter", "Comet", "Willow", "Sparrow")  # fmt: skip
VESSELS = ("container ship", "bulk carrier", "tanker", "ferry", "fishing trawler", "cargo ship", "research vessel")
CARGO = ("timber", "grain", "steel coils", "fertiliser", "cement", "paper rolls", "frozen fish", "machine parts")
PORTS = ("Gdańsk", "Rotterdam", "Aarhus", "Bergen", "Hamburg", "Klaipėda", "Antwerp", "Gothenburg", "Turku", "Cork")
PILOTS = ("Lindqvist", "Okafor", "Dubois", "Nakamura", "Ferreira", "Novak", "Hughes", "Sørensen", "Rossi", "Kowalski")
WEATHER = ("light rain", "thick fog", "a strong westerly wind", "calm seas", "heavy swell", "clear skies", "sleet")
ENTRIES = (
    "At {t} the {v} {s} moored at berth {b} with {q} tonnes of {c} from {p}.",
    "The {v} {s} left berth {b} at {t}, bound for {p} with {q} containers on board.",
    "Pilot {o} brought the {v} {s} through the channel at {t} in {w}.",
    "Customs officers inspected the {v} {s} at {t} and cleared its cargo of {c} without remarks.",
    "At {t} the {v} {s} took on fresh water and {q} tonnes of fuel at berth {b}.",
    "The crane crew unloaded {q} containers from the {v} {s}, which had arrived from {p} at {t}.",
    "The {v} {s} waited at the outer roads until {t} because berth {b} was still occupied.",
    "On arrival from {p} at {t}, the master of the {v} {s} reported {w} along the coast.",
)
LOG_PAGES = 40
LOG_FACTS = {
    27: "At 23:10 the lighthouse keeper Tomas Berglund reported that the northern beacon had failed; "
    "an electrician repaired it before dawn.",
    35: "The salvage tug Kestrel recovered a lost anchor weighing 2,750 kilograms from the outer channel.",
}
MONTHS = ("March", "April")


def harbour_log_pages() -> list[str]:
    """Forty pages of ship movements, one day a page, with the facts of LOG_FACTS mid-page."""
    rng = random.Random("harbour-log")
    ships = iter(rng.sample([f"{a} {b}" for a in SHIP_ADJECTIVES for b in SHIP_NOUNS], LOG_PAGES * len(ENTRIES)))
    pages = []
    for number in range(1, LOG_PAGES + 1):
        lines = []
        for template in rng.sample(ENTRIES, len(ENTRIES)):
            values = {
                "t": f"{rng.randint(0, 23):02d}:{rng.choice((0, 15, 20, 30, 45, 50)):02d}",
                "s": next(ships), "v": rng.choice(VESSELS), "b": rng.randint(1, 18), "q": rng.randint(40, 960),
                "c": rng.choice(CARGO), "p": rng.choice(PORTS), "o": rng.choice(PILOTS), "w": rng.choice(WEATHER),
            }  # fmt: skip
            lines.append(template.format(**values))
        if number in LOG_FACTS:
            lines.insert(4, LOG_FACTS[number])
        day, month = (number - 1) % 31 + 1, MONTHS[(number - 1) // 31]
        title = f"Port Varnes harbour log, {day} {month} 2023, watch kept by {PILOTS[number % len(PILOTS)]}"
        pages.append("\n\n".join([title, " ".join(lines[:4]), " ".join(lines[4:])]))
    return pages


INVOICE = """INVOICE
Northwind Office Supplies Ltd, 14 Mill Lane, Leeds LS1 4AB, United Kingdom

Invoice number: INV-2024-0173
Invoice date: 14 March 2024
Customer: Brightwater Cafe, 3 Quay Street, Bristol BS1 4DJ
Order reference: BW-PO-5521

Items
12 x Printer paper A4, box of 2,500 sheets, at 24.50 EUR = 294.00 EUR
3 x Desk lamp with dimmer, at 58.90 EUR = 176.70 EUR
1 x Ergonomic office chair, black = 349.00 EUR
5 x Toner cartridge, high yield, at 49.90 EUR = 249.50 EUR

Subtotal: 1,069.20 EUR
VAT 20%: 213.84 EUR
Total due: 1,283.04 EUR

Payment terms: payable within 30 days of the invoice date by bank transfer. Please quote the invoice number
with your payment. Bank: Yorkshire Commercial Bank, IBAN GB29 NWBK 6016 1331 9268 19.
Goods remain our property until paid in full. Questions about this invoice: accounts@northwind-supplies.example.
Thank you for your order."""
RECHNUNG = """Rechnung

Elektro Hansen GmbH, Hafenstraße 12, 24103 Kiel
Kunde: Bäckerei Lindner GmbH, Marktplatz 5, 24534 Neumünster

Rechnungsnummer: RE-2024-0419
Rechnungsdatum: 22.05.2024
Leistungszeitraum: 13.05.2024 bis 17.05.2024

Positionen
1 x Reparatur Backofen, Austausch der Steuerung: 890,00 EUR
2 x Heizstab Ersatzteil, je 245,25 EUR: 490,50 EUR
8 Std. Arbeitszeit Meister, je 75,00 EUR: 600,00 EUR

Nettobetrag: 1.980,50 EUR
MwSt. 19 %: 376,30 EUR
Gesamtbetrag: 2.356,80 EUR

Zahlbar innerhalb von 14 Tagen ohne Abzug. Bitte geben Sie bei der Zahlung die Rechnungsnummer an.
Bankverbindung: Förde Sparkasse, IBAN DE44 2105 0170 0012 3456 78.
Vielen Dank für Ihren Auftrag."""
CONTRACT = (
    """SUPPLY AGREEMENT

This supply agreement is made between Lumetra GmbH, Carl-Zeiss-Platz 7, Jena, Germany (the "Supplier"), and
Norvale Instruments AS, Sadama 9, Tallinn, Estonia (the "Buyer").

1. Subject. The Supplier shall deliver polished optical glass windows for water-quality sensors according to
the specification in Annex A.

2. Term. This agreement starts on 1 July 2024 and runs for three years. It renews for one year at a time
unless either party gives notice six months before the end of the term.

3. Quantities and orders. The Buyer shall give a rolling forecast every quarter. Orders are binding once the
Supplier confirms them in writing.""",
    """4. Prices. Prices are fixed for the first year and may be adjusted once a year afterwards, by no more than the
change in the producer price index.

5. Quality. Each delivery comes with a test certificate. The Buyer may reject windows that do not meet the
specification within 30 days of delivery.

6. Liability. Neither party is liable for indirect losses. The total liability of the Supplier is limited to
the value of the orders in the previous twelve months.

7. Governing law. This agreement is governed by German law. Disputes go to the courts of Jena.

Signed for the Supplier: Dr. Anna Weiss, managing director
Signed for the Buyer: Maria Kask, chief executive""",
)
MINUTES = """Minutes of the project meeting, 9 April 2024

Present: Sofia Lind (chair), Markus Tamm, Priya Raman, Jonas Kivi. Apologies: Elena Ruus.

1. Minutes of the last meeting
The minutes of the meeting of 26 March were approved without changes.

2. Field test of the pool sensor
Priya reported that the field test is two weeks behind plan because the test site was closed for repairs.
The meeting agreed to move the test to the second site instead of waiting.

3. Budget
Markus presented the spending so far. The project is within budget; the travel line is underspent.

4. Any other business
Jonas asked for a shared folder for the test photos. Agreed.

Action items
- Priya: book the second test site by 16 April.
- Markus: send the updated budget to the steering group.
- Jonas: create the shared folder and share the link.

Next meeting: 23 April 2024, 10:00, meeting room B. The meeting closed at 11:05."""
TEST_REPORT = """# Technical report TR-17: field test of the Aqualis sensor in a river intake

## Summary

Six Aqualis sensors were installed at the river intake of a water utility for eight weeks. They measured turbidity,
chlorine and temperature every minute. Readings agreed with laboratory samples within the specified tolerance on
97 percent of days.

## Method

Sensors were mounted in a bypass line and cleaned every two weeks. Reference samples were taken each morning and
analysed by an accredited laboratory. Data went to the utility's control system over the existing network.

## Results

Turbidity readings drifted after heavy rain, when sediment covered the optical window. Automatic cleaning removed
most of the deposit. Chlorine readings were stable. Two sensors lost power for a few hours during storm damage.

## Conclusions

The sensor is suitable for river intakes if it is cleaned at least every two weeks. We recommend a stronger wiper
and a battery buffer for the next hardware revision."""
LIBRARY_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Riverside Library visitor guide</title></head>
<body>
<h1>Riverside Library visitor guide</h1>
<p>Welcome to Riverside Library. This guide explains how to use the library and who can help you.</p>
<h2>Opening hours</h2>
<p>The library opens at nine in the morning from Monday to Saturday and closes at six in the evening. On Sundays
only the reading café is open. During school holidays the children's floor opens an hour later.</p>
<h2>Borrowing</h2>
<p>Anyone who lives or works in the city can become a member free of charge. Members may borrow up to 12 books at a
time. Books are lent for three weeks and can be renewed online unless another reader has reserved them.</p>
<h2>Study rooms</h2>
<p>Quiet study rooms on the second floor can be booked at the front desk or on the website. Group rooms have a large
screen and a whiteboard. Please leave the room tidy for the next visitors.</p>
<h2>Rare books</h2>
<p>The archivist, Helen Marsh, looks after the rare books collection. Old maps, letters and early printed books can be
seen by appointment in the special reading room, where pencils are the only writing tools allowed.</p>
<h2>Contact</h2>
<p>Questions about your account go to the front desk. Lost property is kept for one month.</p>
</body></html>
"""


def write_pdf(path: Path, pages: list[str]) -> None:
    """One PDF page per string, DejaVu 11 pt; a page that overflows is an error, never a silent
    second page that would shift every gold page after it."""
    from fpdf import FPDF  # half a second to import: only when a suite is written

    pdf = FPDF(format="A4")
    pdf.set_creation_date(CREATED)  # the same bytes every run
    pdf.set_auto_page_break(False)
    pdf.add_font("DejaVu", "", str(SANS))
    pdf.set_font("DejaVu", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 5.5, text)
        if pdf.get_y() > pdf.h - 10:
            raise RuntimeError(f"{path.name}: page {pdf.page_no()} runs off the page")
    pdf.output(str(path))


WRITERS: dict[str, Callable[[Path], None]] = {
    "annual-report.pdf": lambda path: write_pdf(path, topic_pages(ANNUAL_REPORT, "en", "annual-report")),
    "harbour-log.pdf": lambda path: write_pdf(path, harbour_log_pages()),
    "jahresbericht.pdf": lambda path: write_pdf(path, topic_pages(GERMAN_REPORT, "de", "jahresbericht")),
    "rapport.pdf": lambda path: write_pdf(path, topic_pages(FRENCH_REPORT, "fr", "rapport")),
    "library.html": lambda path: path.write_text(LIBRARY_HTML, encoding="utf-8"),
    "invoice.pdf": lambda path: write_pdf(path, [INVOICE]),
    "rechnung.txt": lambda path: path.write_text(RECHNUNG + "\n", encoding="utf-8"),
    "supply-contract.pdf": lambda path: write_pdf(path, list(CONTRACT)),
    "minutes.txt": lambda path: path.write_text(MINUTES + "\n", encoding="utf-8"),
    "test-report.md": lambda path: path.write_text(TEST_REPORT + "\n", encoding="utf-8"),
}
