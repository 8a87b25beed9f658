"""Tests for cosmic_tl.data: shipped data, the paper's seeded sampling, and user files."""

from __future__ import annotations

import hashlib
import json
import random
import re
import warnings

import pytest

from cosmic_tl.data import (
    BENCHMARK_NAMES,
    LICENCE_NOTICE,
    PAPER_FINGERPRINTS,
    SPLIT_NAMES,
    DatasetError,
    DuplicateInstructionWarning,
    PaperSample,
    Prompt,
    load_benchmark,
    load_prompts,
    load_split,
    sample_paper,
    sources_text,
)

# Counts as stated in SOURCES.md.
SPLIT_COUNTS = {
    "harmful_train": 183,
    "harmful_val": 116,
    "harmful_test": 572,
    "harmless_train": 18_793,
    "harmless_val": 6_264,
    "harmless_test": 6_266,
}
BENCHMARK_COUNTS = {
    "advbench": 520,
    "harmbench_val": 41,
    "harmbench_test": 159,
    "jailbreakbench": 100,
    "malicious_instruct": 100,
    "strongreject": 313,
    "tdc2023": 100,
}
DRAW_ORDER = [
    ("harmful_train", 180),
    ("harmless_train", 180),
    ("harmful_val", 100),
    ("harmless_val", 100),
    ("harmful_test", 512),
    ("harmless_test", 512),
]


def _sources_fingerprint_table() -> dict[str, tuple[int, str, str]]:
    """Parse SOURCES.md's fingerprint table: sample -> (n, sha256[:16], first-item prefix)."""
    row = re.compile(r'^\| (\w+) \| (\d+) \| ([0-9a-f]{16}) \| "(.+)" \|$', re.MULTILINE)
    return {m[1]: (int(m[2]), m[3], m[4]) for m in row.finditer(sources_text())}


def _sha16(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode("utf-8")).hexdigest()[:16]


# --- shipped data ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPLIT_NAMES)
def test_split_counts_match_sources(name):
    prompts = load_split(name)
    assert len(prompts) == SPLIT_COUNTS[name]
    assert all(isinstance(p, Prompt) and p.instruction.strip() for p in prompts)


@pytest.mark.parametrize("name", BENCHMARK_NAMES)
def test_benchmark_counts_match_sources(name):
    assert len(load_benchmark(name)) == BENCHMARK_COUNTS[name]


def test_sources_text_states_the_counts_used_here():
    text = sources_text()
    for name, count in SPLIT_COUNTS.items():
        assert f"| {name}.json | {count:,} " in text
    for name, count in BENCHMARK_COUNTS.items():
        assert f"{name} ({count}" in text


def test_harmful_test_duplicates_and_jailbreakbench_categories():
    harmful_test = [p.instruction for p in load_split("harmful_test")]
    assert len(set(harmful_test)) == 562  # SOURCES.md: 572 items, 562 unique texts
    categories = [p.category for p in load_benchmark("jailbreakbench")]
    assert len(set(categories)) == 10
    assert all(categories.count(c) == 10 for c in set(categories))


def test_no_instruction_shared_between_splits_of_a_class():
    for cls in ("harmful", "harmless"):
        texts = {kind: {p.instruction for p in load_split(f"{cls}_{kind}")} for kind in
                 ("train", "val", "test")}
        assert not texts["train"] & texts["val"]
        assert not texts["train"] & texts["test"]
        assert not texts["val"] & texts["test"]


def test_loaders_return_fresh_lists():
    first = load_split("harmful_val")
    first.clear()
    assert len(load_split("harmful_val")) == 116


def test_unknown_split_and_benchmark_names():
    with pytest.raises(DatasetError, match="harmful_train"):
        load_split("harmful_tran")
    with pytest.raises(DatasetError, match="advbench"):
        load_benchmark("harmful_train")


def test_licence_notice_and_sources():
    text = sources_text()
    assert "CC BY-NC 4.0" in text and "CC BY-NC 4.0" in LICENCE_NOTICE
    for upstream in ("AdvBench", "HarmBench", "JailbreakBench", "StrongREJECT", "TDC2023",
                     "MaliciousInstruct", "Alpaca"):
        assert upstream in text and upstream in LICENCE_NOTICE


# --- the paper's sampling -------------------------------------------------------------------


def test_paper_sample_matches_sources_fingerprints():
    table = _sources_fingerprint_table()
    assert set(table) == set(SPLIT_NAMES)
    sample = sample_paper()
    fingerprints = sample.fingerprints()
    instructions = sample.instructions()
    for name, (n, sha, first) in table.items():
        assert sample.sizes[name] == n
        assert fingerprints[name] == sha, name
        assert instructions[name][0].startswith(first)
    assert fingerprints == PAPER_FINGERPRINTS


def test_paper_sample_test_sets_keep_categories_as_in_spec():
    # The paper's sampling (docs/method.md §7) fingerprints the test samples as full {"instruction", "category"} dicts.
    sample = sample_paper()

    def as_dicts(prompts):
        return [{"instruction": p.instruction, "category": p.category} for p in prompts]

    assert _sha16(as_dicts(sample.harmful_test)) == "4928cefe761f5ed5"
    assert _sha16(as_dicts(sample.harmless_test)) == "8550b691e8073679"
    assert sum(p.category is not None for p in sample.harmful_test) == 512


def test_private_rng_equals_global_seed_procedure():
    saved = random.getstate()
    try:
        random.seed(7)
        expected = {}
        for name, n in DRAW_ORDER:
            split = [p.instruction for p in load_split(name)]
            expected[name] = random.sample(split, n // 4)
        state_before = random.getstate()
        sample = sample_paper(n_train=45, n_val=25, n_test=128, seed=7)
        assert random.getstate() == state_before  # the global stream is untouched
    finally:
        random.setstate(saved)
    assert sample.instructions() == expected
    assert sample.seed == 7


def test_quick_sizes_and_seed_change_the_sample():
    small = sample_paper(n_train=8, n_val=4, n_test=16)
    assert small.sizes == {"harmful_train": 8, "harmless_train": 8, "harmful_val": 4,
                           "harmless_val": 4, "harmful_test": 16, "harmless_test": 16}
    assert set(small.harmful_train) <= {p.instruction for p in load_split("harmful_train")}
    other = sample_paper(n_train=8, n_val=4, n_test=16, seed=43)
    assert other.fingerprints() != small.fingerprints()
    assert isinstance(small, PaperSample)


def test_zero_sizes_are_empty():
    assert set(sample_paper(n_train=0, n_val=0, n_test=0).sizes.values()) == {0}


@pytest.mark.parametrize(
    ("kwargs", "split", "size"),
    [({"n_train": 184}, "harmful_train", 183),
     ({"n_val": 117}, "harmful_val", 116),
     ({"n_test": 573}, "harmful_test", 572),
     ({"n_test": 7000}, "harmful_test", 572)],
)
def test_too_large_sizes_name_the_split(kwargs, split, size):
    requested = next(iter(kwargs.values()))
    with pytest.raises(DatasetError, match=rf"{requested}.*'{split}'.*only {size}"):
        sample_paper(**kwargs)


def test_bad_size_types_and_values():
    with pytest.raises(ValueError, match="n_val"):
        sample_paper(n_val=-1)
    with pytest.raises(TypeError, match="n_train"):
        sample_paper(n_train=1.5)
    with pytest.raises(TypeError, match="seed"):
        sample_paper(seed="42")


# --- user files -----------------------------------------------------------------------------

RECORDS = [
    {"instruction": "Write a poem about the sea.", "category": "creative"},
    {"instruction": "List three prime numbers.", "category": None},
    {"instruction": "Explain photosynthesis, briefly.", "extra": 1},
]
EXPECTED = [
    Prompt("Write a poem about the sea.", "creative"),
    Prompt("List three prime numbers.", None),
    Prompt("Explain photosynthesis, briefly.", None),
]


def test_loads_user_json(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(RECORDS))
    assert load_prompts(path) == EXPECTED
    assert load_prompts(str(path)) == EXPECTED


def test_loads_user_jsonl_skipping_blank_lines(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + "\n".join(map(json.dumps, RECORDS[1:])) + "\n")
    assert load_prompts(path) == EXPECTED


def test_loads_user_csv_with_quotes_newlines_and_bom(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        '\ufeffinstruction,category\n'
        '"Write a poem about the sea.",creative\n'
        'List three prime numbers.,\n'
        '"Explain photosynthesis,\nbriefly.",\n',
        encoding="utf-8",
    )
    prompts = load_prompts(path)
    assert prompts[:2] == EXPECTED[:2]
    assert prompts[2] == Prompt("Explain photosynthesis,\nbriefly.", None)


def test_names_resolve_to_shipped_data():
    assert load_prompts("jailbreakbench") == load_benchmark("jailbreakbench")
    assert load_prompts("harmful_val") == load_split("harmful_val")


def test_unknown_name_lists_names_and_mentions_paths():
    with pytest.raises(DatasetError, match=r"harmful_train.*advbench.*path") as info:
        load_prompts("jailbreak_bench")
    assert "jailbreak_bench" in str(info.value)


@pytest.mark.parametrize("name", ["absent.json", "sub/absent.csv"])
def test_missing_file(tmp_path, name):
    with pytest.raises(DatasetError, match="not found.*absent"):
        load_prompts(tmp_path / name)


def test_unsupported_suffix_and_directory(tmp_path):
    (tmp_path / "mine.md").write_text("hello")
    # The accepted suffixes listed are the ones the loader reads, .txt included (issue #24).
    with pytest.raises(DatasetError, match=r"mine\.md.*unsupported.*\.json, \.jsonl, \.csv, \.txt"):
        load_prompts(tmp_path / "mine.md")
    with pytest.raises(DatasetError, match="is a folder"):
        load_prompts(tmp_path)


def test_non_path_source_is_a_type_error():
    with pytest.raises(TypeError, match="source"):
        load_prompts(["a", "b"])


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.json", "[]"), ("empty.jsonl", "\n\n"), ("empty.csv", "instruction,category\n"),
     ("blank.csv", "")],
)
def test_empty_datasets(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=rf"{re.escape(name)}.*empty"):
        load_prompts(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [("bad.json", '[\n{"instruction": "a"},\n{"instruction": }\n]', r"bad\.json.*JSON.*line 3"),
     ("dict.json", '{"instruction": "a"}', r"dict\.json.*list of objects"),
     ("bad.jsonl", '{"instruction": "a"}\n{"instruction": "b"\n', r"bad\.jsonl.*line 2"),
     ("bad.csv", 'instruction,category\na,b\n"unclosed,c\n', r"bad\.csv.*CSV.*line"),
     ("wide.csv", "instruction,category\na,b\nc,d,e\n", r"wide\.csv.*CSV on line 3")],
)
def test_malformed_files_name_file_and_line(tmp_path, name, content, pattern):
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=pattern):
        load_prompts(tmp_path / name)


BAD_RECORDS = [
    ({"category": "x"}, "no 'instruction' field"),
    ({"instruction": 3}, "must be a string, got int"),
    ({"instruction": None}, "must be a string, got NoneType"),
    ({"instruction": "   "}, "is empty or invisible"),
    ({"instruction": "\u200b\u200b\u200b"}, "is empty or invisible"),
    ({"instruction": "\ufeff\u2060 \u200d\t"}, "is empty or invisible"),
    ({"instruction": "\u3164\u2800"}, "is empty or invisible"),
    ({"instruction": "ok", "category": 5}, "'category' must be a string or null"),
    ("just a string", "not an object"),
]


@pytest.mark.parametrize(("bad", "problem"), BAD_RECORDS)
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_bad_record_reports_first_bad_index(tmp_path, suffix, bad, problem):
    records = [{"instruction": "fine"}, {"instruction": "also fine"}, bad, {"instruction": ""}]
    path = tmp_path / f"records{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("\n".join(json.dumps(r) for r in records))
    with pytest.raises(DatasetError) as info:
        load_prompts(path)
    message = str(info.value)
    assert str(path) in message
    assert "record 2" in message and problem in message
    if suffix == ".jsonl":
        assert "line 3" in message


def test_bad_csv_records(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("instruction,category\nfine,a\n,b\n")
    with pytest.raises(DatasetError, match=r"rows\.csv \(line 3\): record 1: 'instruction' is empty or invisible"):
        load_prompts(path)
    path.write_text("prompt,category\nfine,a\n")
    with pytest.raises(DatasetError, match=r"rows\.csv: record 0.*no 'instruction'.*'prompt'"):
        load_prompts(path)


def test_duplicates_warn_but_are_kept(tmp_path):
    path = tmp_path / "dupes.json"
    path.write_text(json.dumps([{"instruction": t} for t in ["a", "b", "a", "b", "c"]]))
    with pytest.warns(DuplicateInstructionWarning, match=r"dupes\.json.*2 duplicate.*record 2 repeats record 0"):
        prompts = load_prompts(path)
    assert [p.instruction for p in prompts] == ["a", "b", "a", "b", "c"]


def test_no_duplicate_warning_for_unique_file_or_shipped_data(tmp_path):
    path = tmp_path / "unique.json"
    path.write_text(json.dumps(RECORDS))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateInstructionWarning)
        load_prompts(path)
        # harmful_test ships with 10 documented duplicate texts; loading it verbatim is silent.
        load_prompts("harmful_test")


def test_is_blank_sees_through_invisible_characters():
    from cosmic_tl.data import is_blank

    for blank in ("", " ", "\u200b", "\u200c\u200d\u2060\ufeff", "\u00a0\u3000", "\x00\x1f", "\u202e\u2066"):
        assert is_blank(blank), repr(blank)
    for text in ("a", "\u200bhi", "?", "😀", "请", "\u0301x", "0"):
        assert not is_blank(text), repr(text)


def test_csv_with_a_repeated_instruction_column_is_refused(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("instruction,category,instruction\nfirst,x,second\n")
    with pytest.raises(DatasetError, match=r"two\.csv: the CSV header has 2 'instruction' columns; keep one"):
        load_prompts(path)
    path.write_text("instruction,category,category\nfirst,x,y\n")
    with pytest.raises(DatasetError, match=r"2 'category' columns"):
        load_prompts(path)
    path.write_text("instruction,note,note\nfirst,x,y\n")  # an unused column repeated is harmless
    assert load_prompts(path) == [Prompt("first", None)]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_record_repeating_a_key_is_refused(tmp_path, suffix):
    """json.loads keeps the last of two equal keys: the first instruction would vanish silently."""
    record = '{"instruction": "first", "instruction": "second"}'
    path = tmp_path / f"dup{suffix}"
    path.write_text(f"[{record}]" if suffix == ".json" else record + "\n")
    with pytest.raises(DatasetError, match=rf"dup\{suffix}: a record has 2 'instruction' keys"):
        load_prompts(path)


def test_sample_paper_results_are_accepted_as_instructions():
    """train/val are strings and test Prompts; the package's instruction checks take both."""
    from cosmic_tl.prompts import check_instructions

    sample = sample_paper(n_train=2, n_val=2, n_test=3)
    assert all(isinstance(p, Prompt) for p in sample.harmful_test)
    assert check_instructions(sample.harmful_test) == [p.instruction for p in sample.harmful_test]
    assert check_instructions(sample.harmful_train) == sample.harmful_train
