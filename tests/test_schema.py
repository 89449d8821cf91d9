"""The annotation protocol: field numbering, loading errors, and exports read back."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cordmap.cli import app
from cordmap.errors import CordmapError
from cordmap.protocol import levels
from cordmap.protocol.schema import EXPORT_FORMATS, LabelSchema

DOCS = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def schema() -> LabelSchema:
    return LabelSchema.load()


def test_ids_follow_pam50_totalspineseg_and_sct(schema):
    assert schema.find("cord").id == 1
    assert schema.find("csf").id == 2
    assert schema.find("conus").id == 60 == schema.find("conus").code("sct")
    segments = schema.of_class("segment")
    assert [s.level for s in segments] == list(levels.SEGMENTS)  # the whole cord, C1 .. S5
    for segment in segments:
        assert (
            segment.id == 100 + levels.pam50_segment(segment.level) == 100 + segment.code("pam50")
        )
    levelled = lambda *classes: [label for label in schema.of_class(*classes) if label.level]  # noqa: E731
    for vertebra in levelled("vertebra"):
        assert (
            vertebra.id
            == levels.totalspineseg_vertebra(vertebra.level)
            == vertebra.code("totalspineseg")
        )
    for disc in levelled("disc"):
        upper, lower = disc.level.split("-")
        assert disc.id == levels.totalspineseg_disc(upper, lower)
    offsets = {
        ("dorsal_root", "left"): 200,
        ("dorsal_root", "right"): 300,
        ("ventral_root", "left"): 400,
        ("ventral_root", "right"): 500,
    }
    roots = levelled("dorsal_root", "ventral_root")
    assert len(roots) == 4 * len(segments)
    for root in roots:
        assert root.id == offsets[root.structure, root.side] + levels.pam50_segment(root.level)
    # level-free labels for what is known before levels are assigned (e.g. the U-Net's output)
    assert [schema.find(c).id for c in ("vertebra", "disc", "dorsal_root", "ventral_root")] == [
        3,
        4,
        5,
        6,
    ]


def test_the_whole_cord_is_covered_and_published_colours_are_kept(schema):
    """1.2.0 covers C1..S5 and every vertebra and disc; labels published in 1.1.0 keep their
    ids and colours (models and cases depend on them), and no two labels share a colour."""
    assert schema.version == "1.2.0"
    levelled = lambda cls: [label.level for label in schema.of_class(cls) if label.level]  # noqa: E731
    assert levelled("vertebra") == list(levels.VERTEBRAE)
    vertebrae = levels.VERTEBRAE
    assert levelled("disc") == [f"{u}-{w}" for u, w in zip(vertebrae[1:], vertebrae[2:])]
    for cls in ("dorsal_root", "ventral_root"):
        for side in ("left", "right"):
            assert [label.level for label in schema.of_class(cls) if label.side == side] == list(
                levels.SEGMENTS
            )
    published = {
        116: "#3d44f2",
        130: "#f23d3d",
        28: "#f2e3c7",
        50: "#a69c88",
        79: "#80a3ff",
        100: "#536aa6",
        216: "#f28724",
        330: "#afcc1f",
        416: "#28f224",
        530: "#1fcc92",
    }
    assert {i: schema[i].hex for i in published} == published
    colours = [label.colour for label in schema]
    assert len(set(colours)) == len(colours)


def test_lookup_errors(schema):
    assert schema.find("dorsal_root", "L2", "left").name == "dorsal root L2 left"
    assert schema.find("dorsal_root", "C6", "right").name == "dorsal root C6 right"
    with pytest.raises(CordmapError, match="has no segment label Co1"):
        schema.find("segment", "Co1")
    with pytest.raises(CordmapError, match="label id 999 is not in the annotation protocol"):
        schema[999]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        (
            '{"name": "x", "version": 1, "labels": [{"id": 1, "name": "a", "class": "liver", '
            '"colour": "#ffffff"}]}',
            "class 'liver'",
        ),
        (
            '{"name": "x", "version": 1, "labels": [{"id": 1, "name": "a", "class": "cord", '
            '"colour": "#fff"}]}',
            "colour must be #rrggbb",
        ),
        (
            '{"name": "x", "version": 1, "labels": [{"id": 1, "name": "a", "class": "cord", '
            '"colour": "#ffffff"}, {"id": 1, "name": "b", "class": "csf", "colour": "#000000"}]}',
            "defines label id 1 twice",
        ),
    ],
)
def test_bad_protocol_files(tmp_path, content, message):
    path = tmp_path / "protocol.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CordmapError, match=message):
        LabelSchema.load(path)


def parse_itksnap(text: str) -> dict[int, tuple[str, tuple[int, int, int]]]:
    rows = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            idx, r, g, b, alpha, visible, mesh, name = shlex.split(line)
            assert float(alpha) in (0, 1) and visible in ("0", "1") and mesh in ("0", "1")
            rows[int(idx)] = (name, (int(r), int(g), int(b)))
    return rows


def parse_slicer(text: str) -> dict[int, tuple[str, tuple[int, int, int]]]:
    rows = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            idx, name, r, g, b, alpha = line.split()
            assert 0 <= int(alpha) <= 255
            rows[int(idx)] = (name, (int(r), int(g), int(b)))
    return rows


def test_itksnap_label_description_reads_back(schema):
    rows = parse_itksnap(schema.export("itksnap"))
    assert rows.pop(0) == ("Clear Label", (0, 0, 0))
    assert rows == {label.id: (label.name, label.colour) for label in schema}


def test_slicer_colour_table_reads_back(schema):
    text = schema.export("slicer")
    rows = parse_slicer(text)
    assert rows.pop(0)[0] == "background"
    assert rows == {label.id: (label.name.replace(" ", "_"), label.colour) for label in schema}
    assert f"# {len(schema) + 1} values" in text


def test_neuroglancer_segment_properties_follow_the_spec(schema):
    info = json.loads(schema.export("neuroglancer"))
    assert info["@type"] == "neuroglancer_segment_properties"
    inline = info["inline"]
    assert [int(i) for i in inline["ids"]] == [label.id for label in schema]
    assert all(i == str(int(i)) for i in inline["ids"])  # base-10 strings
    types = [p["type"] for p in inline["properties"]]
    assert sorted(types) == ["description", "label", "tags"]  # at most one of each
    by_type = {p["type"]: p for p in inline["properties"]}
    for prop in inline["properties"]:
        assert len(prop["values"]) == len(inline["ids"])
    assert by_type["label"]["values"] == [label.name for label in schema]
    tags = by_type["tags"]
    assert all(" " not in t and not t.startswith("#") for t in tags["tags"])
    for label, indices in zip(schema, tags["values"]):
        assert indices == sorted(indices)
        assert [tags["tags"][i] for i in indices] == [label.structure]


def test_table_lists_every_label_with_its_codes(schema):
    rows = [line.split("|")[1:-1] for line in schema.export("table").splitlines()[2:]]
    assert [int(row[0]) for row in rows] == [label.id for label in schema]
    l1 = next(row for row in rows if int(row[0]) == schema.find("segment", "L1").id)
    assert [cell.strip() for cell in l1] == [
        "121",
        "cord segment L1",
        "segment",
        "L1",
        "",
        "`#3df2a0`",
        "21",
        "",
        "",
    ]
    with pytest.raises(CordmapError, match="unknown protocol format 'csv'"):
        schema.export("csv")


def test_docs_protocol_table_is_up_to_date(schema):
    assert schema.export("table") in DOCS.read_text(encoding="utf-8"), (
        "docs/protocol.md is out of date: paste in `cordmap protocol --format table`"
    )


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_cli_protocol_prints_and_writes_each_format(schema, tmp_path, fmt):
    runner = CliRunner()
    printed = runner.invoke(app, ["protocol", "--format", fmt])
    assert printed.exit_code == 0, printed.output
    assert printed.output == schema.export(fmt)
    out = tmp_path / f"protocol.{fmt}"
    written = runner.invoke(app, ["protocol", "--format", fmt, "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == schema.export(fmt)


def test_cli_protocol_rejects_an_unknown_format(tmp_path):
    out = tmp_path / "labels.txt"
    result = CliRunner().invoke(app, ["protocol", "--format", "csv", "--out", str(out)])
    assert result.exit_code == 1 and "unknown protocol format" in result.output
    assert not out.exists()


def test_every_label_has_its_own_colour(schema):
    """Colour-coded masks map colours to labels, so no two labels may share one."""
    colours = [label.hex for label in schema]
    assert len(set(colours)) == len(colours)
