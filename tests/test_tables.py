"""Tables from documents, the SQL corpus, numerical questions (hand-derived answers), context
assembly to a token target, and whole table tasks on the shipped corpus."""

from __future__ import annotations

import random

import pytest

from actors.synthesis.context import SEPARATOR, JoinCounter, assemble
from actors.synthesis.corpus import Corpus
from actors.synthesis.keychain import default_chains, follow, line_pieces, make_chains, scatter
from actors.synthesis.numeric import Op, Spec, format_number, leaks, question_text, solve, to_sql
from actors.synthesis.table_tasks import MadeTask, Skipped, table_task
from actors.synthesis.tables import csv_table, extract_tables, html_tables, markdown_tables, parse_number
from actors.tasks import word_count
from ops.feed import documents_from_path, world_documents
from tests.corpus_helpers import CORPUS, sample_corpus


def test_numbers_as_written() -> None:
    assert parse_number("1,840") == 1840 and parse_number("$1,520") == 1520 and parse_number("61%") == 61
    assert parse_number("-3.5") == -3.5 and parse_number("Q1") is None and parse_number("1,84") is None
    assert format_number(12.0) == "12" and format_number(1523.3333) == "1523.33" and format_number(-0.001) == "0"


def test_markdown_html_and_csv_tables_keep_their_provenance() -> None:
    text = "# Fees\n\nintro\n\n| Item | Cost |\n|---|--:|\n| A | 1,200 |\n| B | 3 |\n\nafter\n"
    [table], problems = markdown_tables("d", text)
    assert not problems and table.title == "Fees" and table.columns == ("Item", "Cost")
    assert table.rows == (("A", "1,200"), ("B", "3")) and text[table.span[0] : table.span[1]].startswith("| Item")
    html = "<table><caption>Fees</caption><tr><th>Item</th><th>Cost</th></tr><tr><td>A</td><td>1,200</td></tr></table>"
    [table], _ = html_tables("h", "<p>x</p>" + html)
    assert (table.title, table.columns, table.rows, table.span) == (
        "Fees",
        ("Item", "Cost"),
        (("A", "1,200"),),
        (8, 8 + len(html)),
    )
    odd = "a\r\x0cb\n" + html  # line breaks HTMLParser does not count
    [table], _ = html_tables("h", odd)
    assert odd[table.span[0] : table.span[1]] == html
    [table], _ = csv_table("c", "District,Budget\nHarbor,6420\nLakeside,3870\n")
    assert table.rows == (("Harbor", "6420"), ("Lakeside", "3870"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("| a | b |\n|---|---|\n| 1 | 2 | 3 |\n", "ragged table at line 1: row 3 has 3 cells, the header 2"),
        ("| a |  |\n|---|---|\n| 1 | 2 |\n", "table at line 1: a column without a name"),
        ("| a | b |\n|---|---|\n", "table at line 1: no rows"),
    ],
)
def test_tables_that_are_not_rectangles_are_reported_not_guessed(text: str, problem: str) -> None:
    tables, problems = markdown_tables("d", text)
    assert tables == [] and problems == [problem]
    assert csv_table("c", "a,b\n1,2,3\n")[1] == ["CSV ragged table at line 1: row 2 has 3 cells, the header 2"]


def test_questions_over_a_merged_table_have_hand_derived_answers() -> None:
    corpus = sample_corpus()
    stations = next(t for t in corpus.tables("water") if t.columns[0] == "Station")
    # Harbor's three stations and Lakeside's two, merged (same columns), each row with its document
    assert [r[0] for r in stations.rows] == ["Calloway North", "Saltmarsh", "Pier Seven", "Morrow East", "Birchwood"]
    assert len(set(stations.doc_ids)) == 2
    staff, opened, capacity, cost = 3, 1, 2, 4
    cases = [
        (Spec(Op.SUM, staff), 11 + 9 + 7 + 8 + 6),  # 41
        (Spec(Op.SUM, staff, 0, ("Birchwood", "Saltmarsh")), 6 + 9),  # 15
        (Spec(Op.MEAN, cost), (1840 + 1520 + 1210 + 1330 + 990) / 5),  # 1378
        (Spec(Op.MAX, capacity), 42),
        (Spec(Op.MIN, opened), 1998),
        (Spec(Op.COUNT_ABOVE, capacity, threshold=30), 3),  # 42, 35, 31
        (Spec(Op.DIFF, opened, 0, ("Pier Seven", "Calloway North")), 2014 - 1998),  # 16
    ]
    for spec, expected in cases:
        assert corpus.scalar(*to_sql(spec, stations.name)) == pytest.approx(expected), spec
        assert solve(spec, stations) == pytest.approx(expected), spec
    years = question_text(cases[-1][0], stations)
    assert (
        years
        == "In the Pumping stations tables, how many years after Station Calloway North was Station Pier Seven (Opened)"
    )
    assert leaks("30", "how many rows have Capacity above 30") and not leaks(
        "3", "how many rows have Capacity above 30"
    )


def test_context_hits_the_token_target_with_evidence_at_the_depth() -> None:
    fillers = [" ".join(f"f{i}w{j}" for j in range(40)) for i in range(200)]
    for target in (64, 500, 4000):
        for depth in (0.0, 0.5, 1.0):
            context = assemble(["EVIDENCE a b c"], fillers, target, word_count, depth)
            assert context is not None and abs(word_count(context) - target) <= 0.02 * target
            where = context.index("EVIDENCE") / len(context)
            assert abs(where - depth) < 0.15 or target == 64, (target, depth, where)
    assert assemble(["x " * 100], fillers, 50, word_count, 0.5) is None, "evidence longer than the target"
    assert assemble(["x"], fillers[:1], 4000, word_count, 0.5) is None, "too few documents to fill it"


def test_table_tasks_on_the_shipped_corpus_are_verified_grounded_and_on_target() -> None:
    corpus = sample_corpus()
    rng = random.Random(0)
    made: list[MadeTask] = []
    for i in range(60):
        task = table_task(corpus, "water", rng, 700, word_count, depth=i % 5 / 4)
        assert task is not Skipped.UNVERIFIED
        if isinstance(task, MadeTask):
            made.append(task)
    assert len(made) >= 40
    assert {t.spec.op for t in made} == set(Op)
    for task in made:
        context = task.composed.context
        assert abs(word_count(context) - 700) <= 14
        for text in corpus.texts(list(task.doc_ids)):
            assert text in context, "every evidence document is in the context, whole"
        assert not leaks(task.composed.answer, task.composed.question)
    assert any(len(t.doc_ids) >= 2 for t in made), "merged tables give questions over two documents"


def test_key_chains_lead_from_the_head_to_the_real_question_only() -> None:
    rng = random.Random(1)
    chain = make_chains("what is the total Staff", ["decoy one", "decoy two"], rng, chains=3, length=4)
    # 3 chains of 4 keys: 3 links and 1 question line each
    assert len(chain.lines) == 12 and sum(not line.split(": ", 1)[1].count("-") for line in chain.lines) == 3
    assert follow(chain.lines, chain.head) == "what is the total Staff"
    heads = {line.split(": ")[0] for line in chain.lines} - {line.split(": ")[1] for line in chain.lines}
    assert chain.head in heads and {follow(chain.lines, h) for h in heads} == {
        "what is the total Staff",
        "decoy one",
        "decoy two",
    }
    assert default_chains(1024) == 4 and default_chains(32 * 1024) == 128 and default_chains(100) == 2
    placed = scatter(["a", "b\n\nstill b", "c"], chain.lines, rng)
    assert sorted(placed) == sorted(["a", "b\n\nstill b", "c", *chain.lines]), "between documents, never inside one"
    assert [p for p in placed if p in "a b\n\nstill b c"] == ["a", "b\n\nstill b", "c"], "documents keep their order"


def test_keychain_table_tasks_hide_the_verified_question_at_the_chain_end() -> None:
    corpus = sample_corpus()
    rng = random.Random(2)
    made = [t for t in (table_task(corpus, "water", rng, 1500, word_count, 0.5, keychain=True) for _ in range(20))]
    made = [t for t in made if isinstance(t, MadeTask)]
    assert len(made) >= 10
    for task in made:
        composed = task.composed
        assert composed.task_type.value == "keychain" and abs(word_count(composed.context) - 1500) <= 30
        head = composed.question.split("Start at key ")[1].split(" ")[0]
        lines = [p for p in composed.context.split("\n\n") if p.count("-") >= 4 and ": " in p]
        asked = question_text(task.spec, next(t for t in corpus.tables("water") if t.name in task.sql))
        rounded = not float(composed.answer).is_integer()
        assert follow(lines, head) == asked + (", to 2 decimal places" if rounded else "")


def test_total_rows_are_not_data_and_titles_keep_tables_apart() -> None:
    corpus = Corpus(":memory:")
    text = (
        "## 2024 readings\n\n| Site | Flow |\n|---|---|\n| A | 10 |\n| B | 20 |\n| Total | 30 |\n\n"
        "## 2025 readings\n\n| Site | Flow |\n|---|---|\n| A | 30 |\n| B | 40 |\n"
    )
    tables, _ = extract_tables("d", text)
    corpus.add_document("d", "c", text, word_count(text), tables)
    merged = {t.title: t for t in corpus.tables("c")}
    assert set(merged) == {"2024 readings", "2025 readings"}, "same columns, other titles: not merged"
    assert merged["2024 readings"].rows == (("A", "10"), ("B", "20")), "the Total row is not a row"
    assert corpus.scalar(*to_sql(Spec(Op.SUM, 1), merged["2024 readings"].name)) == 30


def test_rounded_answers_say_so_in_the_question() -> None:
    corpus = sample_corpus()
    rng = random.Random(5)
    made = [t for t in (table_task(corpus, "water", rng, 400, word_count, 0.5) for _ in range(80))]
    rounded = [t for t in made if isinstance(t, MadeTask) and not float(t.composed.answer).is_integer()]
    assert rounded and all(t.composed.question.endswith(", to 2 decimal places") for t in rounded)


QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
r"""Qwen2's pre-tokenizer split (tokenizer.json), single digits; Llama-3's differs in `\p{N}{1,3}`."""


def _bpe_counter(split: str = "") -> tuple[object, list[str]]:
    """A byte-level BPE trained here on the shipped corpus and worlds: GPT-2's pre-tokenizer, or
    `split` (a regex, as Qwen's and Llama-3's tokenizer.json give it) before the byte mapping."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    texts = [d["text"] for d in documents_from_path(CORPUS, "water")]
    texts += [d["text"] for d in world_documents(worlds=20, entities_per_world=8, seed=0)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        if split
        else pre_tokenizers.ByteLevel(add_prefix_space=False)
    )
    trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return (lambda text: len(tokenizer.encode(text).ids)), texts


@pytest.mark.parametrize("split", ["", QWEN_SPLIT, QWEN_SPLIT.replace(r"\p{N}|", r"\p{N}{1,3}|")])
def test_joined_counts_equal_whole_counts_under_a_byte_level_bpe(split: str) -> None:
    count, texts = _bpe_counter(split)
    joins = JoinCounter(count, audit_first=0, audit_every=10**9)  # never audited: the sums alone
    rng = random.Random(0)
    chains = make_chains("what is the total Staff", ["decoy"], rng, 4, 4).lines  # UUID lines
    pieces = texts + [t.split("\n\n")[0] for t in texts] + ["Total: 42.", "| a | b |\n|---|---|\n| 1 | 2 |\n"]
    pieces += list(chains) + ["x9", "9x", "2014", "Q3 2,410", "ab12345", "12345cd", "v2.0", "三5"]
    for _ in range(300):
        parts = rng.sample(pieces, rng.randint(2, 12))
        assert joins.joined(parts, [count(p) for p in parts]) == count(SEPARATOR.join(parts)), parts
    assert joins.mismatches == 0
    for line in chains:  # a chain line's count is the sum of its two pieces' (cached across tasks)
        assert sum(count(piece) for piece in line_pieces(line)) == count(line), line


def test_a_counter_that_is_not_local_is_caught_and_counted_whole() -> None:
    def count(text: str) -> int:  # one token more for any text over 60 characters
        return len(text.split()) + (len(text) > 60)

    joins = JoinCounter(count, audit_first=1, audit_every=3)
    parts = ["a b c d e f g h i j k l m n o p q r"] * 2  # 35 characters each: 18 tokens alone
    assert joins.joined(parts, [None, None]) == 37, "audited: 36 words + 1 for 72 characters, not 18 + 18 + 0"
    assert joins.mismatches == 1 and joins.whole
    assert joins.joined(parts * 3, [None] * 6) == count(SEPARATOR.join(parts * 3))


def test_random_order_is_a_seeded_permutation_drawn_lazily() -> None:
    from actors.synthesis.corpus import random_order

    orders = [list(random_order(random.Random(s), 50)) for s in (1, 1, 2)]
    assert sorted(orders[0]) == list(range(50)) and orders[0] == orders[1] != orders[2]
    first = random_order(random.Random(3), 10**9)
    assert len({next(first) for _ in range(100)}) == 100, "a billion ids, 100 drawn, nothing materialised"


def test_a_full_boundary_cache_is_emptied_before_it_is_read() -> None:
    joins = JoinCounter(word_count, audit_first=0, audit_every=10**9)
    joins.cache_limit = 1
    parts = ["alpha beta", "gamma delta", "eps zeta"]
    assert joins.joined(parts[:2], [2, 2]) == 4  # one boundary cached
    assert joins.joined(parts, [2, 2, 2]) == 6 and joins.joined(parts, [2, 2, 2]) == 6, "was a KeyError"


def test_blank_parts_are_counted_whole() -> None:
    count, _ = _bpe_counter()
    joins = JoinCounter(count, audit_first=0, audit_every=10**9)
    for parts in (["The fox", "", "the dog"], ["The fox", "\n", "the dog"]):
        assert joins.joined(parts, [count(p) for p in parts]) == count(SEPARATOR.join(parts))


def test_evidence_is_kept_whole_and_in_order_while_it_fits() -> None:
    from actors.synthesis.table_tasks import fit_evidence

    # 4 + 5 = 9 characters fit a limit of 10; the next span (3) would make 12: left out, and
    # so is everything after it, even the 1-character span that would fit alone
    assert fit_evidence(["abcd", "efghi", "jkl", "m"], 10) == (("abcd", "efghi"), True)
    assert fit_evidence(["abcd", "efghi"], 9) == (("abcd", "efghi"), False)
    assert fit_evidence([], 5) == ((), False)
    from actors.synthesis.config import SynthesisConfig

    with pytest.raises(ValueError, match=r"synthesis.max_evidence_chars \(10\) must be >= 1000"):
        SynthesisConfig(max_evidence_chars=10)
