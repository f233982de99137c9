"""PDFs with known text, written on the spot, for measuring PDF readers (benchmarks/reading.py).

Each document exercises one thing a reader can get wrong: plain pages; two columns written line by
line across (a naive reader reads across them); the ligature characters ﬁ ﬂ ﬀ ﬃ ﬄ in the text
layer; words hyphenated at line ends in justified lines (and compounds broken at their hyphen);
seven accented Latin languages; pages that are only images of text (scans, 300 dpi, no text
layer). Text is realistic sentences in each language, chosen and numbered by a seeded generator,
so every run writes the same files. Fonts: Debian's fonts-dejavu-core.

The scores compare a reader's text with the known text: word recall and precision over multisets
of words, and character accuracy (1 - edit distance / length, whitespace normalized).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # fpdf2 and PIL take half a second to import: reading.py's measuring processes skip them
    from fpdf import FPDF

FONTS = Path("/usr/share/fonts/truetype/dejavu")
SANS = FONTS / "DejaVuSans.ttf"
SERIF = FONTS / "DejaVuSerif.ttf" if (FONTS / "DejaVuSerif.ttf").exists() else SANS
TEXT_WORDS = 320  # words on a page with a text layer
SCAN_WORDS = 190  # words on a scanned page: OCR stays a few seconds a page
SCAN_SIZE = (2480, 3508)  # A4 at 300 dpi
SCAN_FONT_PX, SCAN_LINE_PX, SCAN_MARGIN_PX = 48, 70, 200  # 11.5 pt at 300 dpi
LANGUAGES = ("de", "es", "fr", "cs", "pt", "it", "nl")
LIGATURES = {"ffi": "ﬃ", "ffl": "ﬄ", "ff": "ﬀ", "fi": "ﬁ", "fl": "ﬂ"}  # longest first
TITLES = ("Operations and staffing", "Finance and cash flow", "Suppliers and contracts",
          "Research and development", "Outlook for the coming year", "Offices and equipment")  # fmt: skip
_VOWELS = set("aeiouy")
_WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

# One sentence a line; {n}, {y} and {p} become a count, a year and a percentage.
SENTENCES = {
    "en": """
The finance office filed its final report for {y} on time, and the auditors found no significant differences.
Staff in the Leeds office handled {n} official requests last quarter, a workflow that remained efficient.
A well-known supplier offered a cost-effective solution for the traffic system, and the board accepted it.
Our long-term strategy focuses on high-quality products, reliable delivery and fair prices for affiliated shops.
The follow-up meeting clarified the responsibilities of each department and the timeline for the next phases.
Cash flow improved by {p} percent, mainly because customers paid their invoices faster than in previous years.
Several full-time engineers joined the team to modernize the infrastructure and document every interface.
The committee recognized that decision-making had become too slow and asked managers to simplify approvals.
Independent reviewers confirmed that the third-party software met the security requirements of the contract.
Fluctuations in energy prices affected the profitability of the manufacturing division in the first half.
The scientific council reviewed {n} applications and selected the proposals with the clearest benefits.
Offline training sessions were scheduled for new employees, who often find the internal tools difficult.
Management expects revenue of {n} million euros next year if the international expansion proceeds as planned.
The official inspection identified minor deficiencies in the warehouse, which were fixed within {p} days.
""",
    "de": """
Der Vorstand hat den Jahresbericht für {y} geprüft und festgestellt, dass die Umsätze überall gestiegen sind.
Die Mitarbeiter in München bearbeiteten im letzten Quartal {n} Anträge, obwohl zwei Stellen unbesetzt blieben.
Nach längerer Diskussion beschloss der Ausschuss, den Vertrag mit dem bisherigen Lieferanten zu verlängern.
Die Energiekosten sind um {p} Prozent gesunken, weil die neue Heizungsanlage deutlich weniger Strom verbraucht.
Für die Umstellung der Buchhaltung auf das neue System werden im Frühjahr zusätzliche Schulungen angeboten.
Größere Investitionen in die Forschung sollen die Wettbewerbsfähigkeit des Unternehmens im Ausland stärken.
Die Prüfer bestätigten, dass alle Verträge ordnungsgemäß unterzeichnet und die Zahlungen pünktlich geleistet wurden.
Im Werk in Dresden wurden {n} Maschinen modernisiert, wodurch sich die Ausfallzeiten spürbar verringert haben.
Die Geschäftsführung erwartet ein stabiles Wachstum, sofern die Nachfrage in Europa nicht plötzlich einbricht.
Über die Verteilung der Gewinne entscheidet die Hauptversammlung, die im Juni in Köln stattfinden wird.
""",
    "es": """
La junta directiva revisó el informe anual de {y} y comprobó que las ventas aumentaron en todas las regiones.
El equipo de Sevilla tramitó {n} solicitudes durante el último trimestre, aunque dos puestos seguían vacantes.
Después de un largo debate, la comisión decidió ampliar el contrato con el proveedor actual por tres años.
Los costes de energía bajaron un {p} por ciento gracias a la nueva instalación, que consume menos electricidad.
Se ofrecerán cursos de formación adicionales en primavera para facilitar el cambio al nuevo sistema contable.
Las inversiones en investigación deberían reforzar la posición de la empresa en los mercados internacionales.
Los auditores confirmaron que todos los pagos se realizaron a tiempo y que los contratos estaban firmados.
En la fábrica de Valencia se modernizaron {n} máquinas, lo que redujo de forma notable el tiempo de inactividad.
La dirección espera un crecimiento estable el próximo año, siempre que la demanda europea no disminuya.
La asamblea general, que se celebrará en Málaga en junio, decidirá cómo se reparten los beneficios del ejercicio.
""",
    "fr": """
Le conseil d'administration a examiné le rapport annuel de {y} et constaté que les ventes ont progressé partout.
L'équipe de Lyon a traité {n} demandes au cours du dernier trimestre, bien que deux postes soient restés vacants.
Après un long débat, la commission a décidé de prolonger de trois ans le contrat conclu avec le fournisseur.
Les dépenses d'énergie ont baissé de {p} pour cent grâce à la nouvelle installation, qui consomme bien moins.
Des formations supplémentaires seront proposées au printemps afin de faciliter le passage au nouveau système.
Les investissements dans la recherche doivent renforcer la compétitivité de l'entreprise à l'étranger.
Les commissaires aux comptes ont confirmé que tous les paiements avaient été effectués à temps et sans erreur.
Dans l'usine de Toulouse, {n} machines ont été modernisées, ce qui a nettement réduit les périodes d'arrêt.
La direction prévoit une croissance régulière l'année prochaine, à condition que la demande reste soutenue.
L'assemblée générale, qui se tiendra à Nantes au mois de juin, décidera de la répartition des bénéfices.
""",
    "cs": """
Představenstvo projednalo výroční zprávu za rok {y} a konstatovalo, že tržby vzrostly ve všech regionech.
Tým v Brně vyřídil v posledním čtvrtletí {n} žádostí, přestože dvě pracovní místa zůstala neobsazená.
Po dlouhé diskusi se komise rozhodla prodloužit smlouvu se stávajícím dodavatelem o další tři roky.
Náklady na energii klesly o {p} procent díky novému zařízení, které spotřebuje mnohem méně elektřiny.
Na jaře budou nabídnuta další školení, která usnadní přechod na nový účetní systém.
Investice do výzkumu mají posílit konkurenceschopnost společnosti na zahraničních trzích.
Auditoři potvrdili, že všechny platby byly provedeny včas a že smlouvy byly řádně podepsány.
V závodě v Ostravě bylo modernizováno {n} strojů, čímž se výrazně zkrátily prostoje výroby.
Vedení očekává v příštím roce stabilní růst, pokud poptávka v Evropě náhle neoslabí.
O rozdělení zisku rozhodne valná hromada, která se uskuteční v červnu v Plzni.
""",
    "pt": """
O conselho de administração analisou o relatório anual de {y} e verificou que as vendas cresceram em todo o país.
A equipa do Porto tratou {n} pedidos no último trimestre, apesar de dois lugares continuarem por preencher.
Depois de uma longa discussão, a comissão decidiu prolongar o contrato com o fornecedor atual por três anos.
Os custos de energia diminuíram {p} por cento graças à nova instalação, que consome muito menos eletricidade.
Na primavera serão oferecidas ações de formação para facilitar a transição para o novo sistema de contabilidade.
Os investimentos em investigação deverão reforçar a competitividade da empresa nos mercados internacionais.
Os auditores confirmaram que todos os pagamentos foram efetuados a tempo e que os contratos estavam assinados.
Na fábrica de Braga foram modernizadas {n} máquinas, o que reduziu de forma significativa as paragens.
A direção espera um crescimento estável no próximo ano, desde que a procura europeia não sofra uma quebra.
A assembleia geral, que se realizará em Coimbra no mês de junho, decidirá como serão distribuídos os lucros.
""",
    "it": """
Il consiglio di amministrazione ha esaminato la relazione annuale del {y} e ha constatato una crescita delle vendite.
La squadra di Torino ha gestito {n} richieste nell'ultimo trimestre, nonostante due posti siano rimasti vacanti.
Dopo una lunga discussione, la commissione ha deciso di prorogare di tre anni il contratto con l'attuale fornitore.
I costi energetici sono diminuiti del {p} per cento grazie al nuovo impianto, che consuma molta meno elettricità.
In primavera saranno offerti ulteriori corsi di formazione per facilitare il passaggio al nuovo sistema contabile.
Gli investimenti nella ricerca dovrebbero rafforzare la competitività dell'azienda sui mercati internazionali.
I revisori hanno confermato che tutti i pagamenti sono stati effettuati puntualmente e che i contratti erano regolari.
Nello stabilimento di Bologna sono state ammodernate {n} macchine, riducendo in modo sensibile i tempi di fermo.
La direzione prevede una crescita stabile il prossimo anno, purché la domanda europea non subisca un calo.
L'assemblea generale, che si terrà a Genova nel mese di giugno, deciderà come ripartire gli utili dell'esercizio.
""",
    "nl": """
De raad van bestuur heeft het jaarverslag over {y} besproken en vastgesteld dat de omzet overal is gestegen.
Het team in Utrecht heeft in het laatste kwartaal {n} aanvragen behandeld, hoewel twee vacatures onvervuld bleven.
Na een lange discussie besloot de commissie het contract met de huidige leverancier met drie jaar te verlengen.
De energiekosten daalden met {p} procent dankzij de nieuwe installatie, die veel minder elektriciteit verbruikt.
In het voorjaar worden extra cursussen aangeboden om de overstap naar het nieuwe boekhoudsysteem te vergemakkelijken.
Investeringen in onderzoek moeten de concurrentiepositie van het bedrijf op buitenlandse markten versterken.
De accountants bevestigden dat alle betalingen op tijd zijn verricht en dat de contracten correct waren ondertekend.
In de fabriek in Eindhoven zijn {n} machines gemoderniseerd, waardoor de stilstand aanzienlijk is verminderd.
De directie verwacht volgend jaar een stabiele groei, mits de Europese vraag niet plotseling terugvalt.
De algemene vergadering, die in juni in Groningen plaatsvindt, beslist over de verdeling van de winst.
""",
}


@dataclass(frozen=True)
class CorpusPdf:
    name: str  # e.g. "two-columns.pdf"
    path: Path
    pages: tuple[str, ...]  # the known text of each page, in reading order (two columns: left, then right)
    language: str  # ISO 639-1
    scanned: bool  # the pages are images of text, with no text layer
    feature: str  # "plain", "two-columns", "ligatures", "hyphenation", "languages" or "scan"


def write_corpus(folder: Path, *, scale: int = 1) -> list[CorpusPdf]:
    """Write every document into `folder`; `scale` multiplies the page counts (1: 27 pages)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        _flowing(folder / "plain.pdf", "en", 3 * scale, "plain"),
        _two_columns(folder / "two-columns.pdf", 2 * scale),
        _flowing(folder / "ligatures.pdf", "en", 2 * scale, "ligatures"),
        _hyphenated(folder / "hyphenation.pdf", 2 * scale),
        *(_flowing(folder / f"languages-{code}.pdf", code, 2 * scale, "languages") for code in LANGUAGES),
        *(_scanned(folder / f"scan-{code}.pdf", code, 2 * scale) for code in ("en", "de")),
    ]


def paragraphs(language: str, pages: int, words: int, seed: str) -> list[list[str]]:
    """`pages` pages of about `words` words each (paragraphs of four sentences), the same for the
    same arguments: each sentence of the language once (shuffled) before any comes again."""
    rng, pool, queue, result = random.Random(f"{language}/{seed}"), SENTENCES[language].strip().splitlines(), [], []
    for _ in range(pages):
        sentences: list[str] = []
        while sum(len(sentence.split()) for sentence in sentences) < words:
            if not queue:
                queue = rng.sample(pool, len(pool))
            numbers = {"n": rng.randint(12, 980), "y": rng.randint(2015, 2024), "p": rng.randint(2, 19)}
            sentences.append(queue.pop().format(**numbers))
        result.append([" ".join(sentences[start : start + 4]) for start in range(0, len(sentences), 4)])
    return result


def _new_pdf(font: Path, size: float) -> FPDF:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)  # each generated page is one page; _check_fits says when it is not
    pdf.add_font("Body", "", str(font))
    pdf.set_font("Body", size=size)
    return pdf


def _check_fits(pdf: FPDF, y: float) -> None:
    if y > pdf.h - 10:
        raise RuntimeError(f"page {pdf.page_no()} of generated text runs off the page (y = {y:.0f} mm)")


def _finish(pdf: FPDF, path: Path, pages: list[str], language: str, feature: str, scanned: bool = False) -> CorpusPdf:
    pdf.output(str(path))
    return CorpusPdf(path.name, path, tuple(pages), language, scanned, feature)


def _flowing(path: Path, language: str, count: int, feature: str) -> CorpusPdf:
    """Paragraphs set by fpdf2's own line breaking; "ligatures" writes ﬁ, ﬂ, ... into the text layer."""
    pdf, known = _new_pdf(SERIF if feature == "ligatures" else SANS, 11), []
    for page in paragraphs(language, count, TEXT_WORDS, feature):
        pdf.add_page()
        for paragraph in page:
            pdf.multi_cell(0, 5.5, ligate(paragraph) if feature == "ligatures" else paragraph)
            pdf.ln(3)
        _check_fits(pdf, pdf.get_y())
        known.append("\n\n".join(page))
    return _finish(pdf, path, known, language, feature)


def ligate(text: str) -> str:
    for letters, ligature in LIGATURES.items():
        text = text.replace(letters, ligature)
    return text


def _two_columns(path: Path, count: int) -> CorpusPdf:
    """A full-width title, then two columns written row by row: left line 1, right line 1, ..."""
    pdf, known, top, step, width = _new_pdf(SANS, 10), [], 34.0, 4.6, 82.0
    for index, page in enumerate(paragraphs("en", count, TEXT_WORDS, "two-columns")):
        title = TITLES[index % len(TITLES)]
        lines = [" ".join(line) for line in _lines(" ".join(page).split(), width, pdf.get_string_width)]
        left, right = lines[: (len(lines) + 1) // 2], lines[(len(lines) + 1) // 2 :]
        pdf.add_page()
        pdf.set_font_size(14)
        pdf.text(20, 22, title)
        pdf.set_font_size(10)
        for row, line in enumerate(left):
            pdf.text(20, top + row * step, line)
            if row < len(right):
                pdf.text(108, top + row * step, right[row])
        _check_fits(pdf, top + len(left) * step)
        known.append("\n".join([title, *left, *right]))
    return _finish(pdf, path, known, "en", "two-columns")


def _hyphenated(path: Path, count: int) -> CorpusPdf:
    """Justified lines (each word placed on its own, the gaps widened to fill the line), long words
    broken with a hyphen at the line end ("recog-" / "nize") and compounds at their hyphen."""
    pdf, known, width, step = _new_pdf(SERIF, 11), [], 170.0, 5.5
    for page in paragraphs("en", count, TEXT_WORDS, "hyphenation"):
        pdf.add_page()
        y = 25.0
        for paragraph in page:
            lines = _lines(paragraph.split(), width, pdf.get_string_width, hyphenate=True)
            for number, words in enumerate(lines):
                sizes = [pdf.get_string_width(word) for word in words]
                last = number == len(lines) - 1 or len(words) == 1
                gap = pdf.get_string_width(" ") if last else (width - sum(sizes)) / (len(words) - 1)
                x = 20.0
                for word, size in zip(words, sizes, strict=True):
                    pdf.text(x, y, word)
                    x += size + gap
                y += step
            y += 3
        _check_fits(pdf, y)
        known.append("\n\n".join(page))
    return _finish(pdf, path, known, "en", "hyphenation")


def _lines(words: list[str], width: float, measure: Callable[[str], float], hyphenate: bool = False) -> list[list[str]]:
    """Greedy line filling; with `hyphenate`, a word that does not fit is broken when its head fits."""
    lines: list[list[str]] = [[]]
    queue, space = deque(words), measure(" ")
    while queue:
        word, line = queue.popleft(), lines[-1]
        room = width - sum(measure(part) + space for part in line)
        if not line or measure(word) <= room:
            line.append(word)
            continue
        head, tail = _break(word, room, measure) if hyphenate else (None, word)
        if head:
            line.append(head)
        queue.appendleft(tail)
        lines.append([])
    return lines


def _break(word: str, room: float, measure: Callable[[str], float]) -> tuple[str | None, str]:
    """The longest head of `word` (ending in a hyphen) that fits in `room`: a compound at its own
    hyphen; a lower-case word of 7+ letters before a consonant that starts a syllable (com-mittee)."""
    core = word.rstrip(".,;:")
    if core.count("-") == 1:
        cuts = [core.index("-") + 1]
    elif core.isalpha() and core.islower() and len(core) >= 7:
        cuts = [cut for cut in range(3, len(core) - 2) if core[cut] not in _VOWELS and core[cut + 1] in _VOWELS]
    else:
        cuts = []
    for cut in reversed(cuts):
        head = word[:cut] if word[cut - 1] == "-" else word[:cut] + "-"
        if measure(head) <= room:
            return head, word[cut:]
    return None, word


def _scanned(path: Path, language: str, count: int) -> CorpusPdf:
    """Pages that are 300-dpi images of black text on white, full page, with no text layer."""
    pdf, known = _new_pdf(SANS, 11), []
    for page in paragraphs(language, count, SCAN_WORDS, "scan"):
        pdf.add_page()
        pdf.image(_page_image(page), x=0, y=0, w=pdf.w, h=pdf.h)
        known.append("\n\n".join(page))
    return _finish(pdf, path, known, language, "scan", scanned=True)


def _page_image(page: list[str]):
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", SCAN_SIZE, 255)
    draw, font = ImageDraw.Draw(image), ImageFont.truetype(str(SANS), SCAN_FONT_PX)
    y, width = SCAN_MARGIN_PX, SCAN_SIZE[0] - 2 * SCAN_MARGIN_PX
    for paragraph in page:
        for words in _lines(paragraph.split(), width, lambda text: draw.textlength(text, font=font)):
            draw.text((SCAN_MARGIN_PX, y), " ".join(words), fill=0, font=font)
            y += SCAN_LINE_PX
        y += SCAN_LINE_PX // 2
    if y > SCAN_SIZE[1] - SCAN_MARGIN_PX:
        raise RuntimeError(f"a scanned page's text runs off the image (y = {y} px)")
    return image


def word_tokens(text: str) -> list[str]:
    """The words of `text`, NFKC and case folded: runs of letters and digits, with apostrophes inside."""
    return [word.replace("’", "'") for word in _WORD_RE.findall(unicodedata.normalize("NFKC", text).casefold())]


def word_scores(found: str, known: str) -> tuple[float, float]:
    """(recall, precision) of the words of `found` against those of `known`, as multisets."""
    found_words, known_words = Counter(word_tokens(found)), Counter(word_tokens(known))
    common = sum((found_words & known_words).values())
    recall = common / known_words.total() if known_words else 1.0
    precision = common / found_words.total() if found_words else float(not known_words)
    return recall, precision


def char_accuracy(found: str, known: str) -> float:
    """1 - edit distance / length of the known text, both with runs of whitespace as one space;
    0 when the found text needs more edits than the known text has characters."""
    found, known = " ".join(found.split()), " ".join(known.split())
    if not known:
        return float(not found)
    return max(0.0, 1 - levenshtein(found, known) / len(known))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), bit-parallel (Myers 1999, Hyyrö's
    formulation): one pass over `a`, with one bit per character of `b` in Python integers."""
    if not b:
        return len(a)
    masks: dict[str, int] = {}
    for index, char in enumerate(b):
        masks[char] = masks.get(char, 0) | 1 << index
    full, last = (1 << len(b)) - 1, 1 << (len(b) - 1)
    plus, minus, distance = full, 0, len(b)
    for char in a:
        equal = masks.get(char, 0)
        vertical = equal | minus
        horizontal = (((equal & plus) + plus) ^ plus) | equal
        up, down = minus | ~(horizontal | plus), plus & horizontal
        distance += 1 if up & last else -1 if down & last else 0
        up, down = (up << 1) | 1, down << 1
        plus, minus = (down | ~(vertical | up)) & full, up & vertical & full
    return distance
