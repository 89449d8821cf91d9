"""Study registry: migrations, versions, transactions, CSV import, scans, DICOM de-identification."""

import hashlib
import json
import sqlite3

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from sqlalchemy import create_engine, inspect

from cordmap.case import Case
from cordmap.errors import CordmapError
from cordmap.io.dicom import write_dicom_series
from cordmap.io.nifti import write_nifti
from cordmap.pipeline.imports import import_case
from cordmap.protocol.schema import LabelSchema
from cordmap.study import migrations
from cordmap.study.csvimport import COLUMNS, import_participants_csv
from cordmap.study.deid import deidentify_dicom
from cordmap.study.registry import (
    Base,
    Registry,
    init_registry,
    validate_participant,
    write_training_list,
)
from cordmap.volume import LabelVolume, Volume

HEADER = ",".join(COLUMNS)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "study.db"
    init_registry(path)
    return path


def participant_count(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("select count(*) from participants").fetchone()[0]


def versions(path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("select version from schema_version order by version")]


# -- versions and migrations ----------------------------------------------------------------
def test_init_applies_every_migration_once(tmp_path):
    path = tmp_path / "study.db"
    assert init_registry(path).applied == [1, 2]
    assert init_registry(path).applied == []
    assert versions(path) == [1, 2] == [v for v, _, _ in migrations.MIGRATIONS]


def test_migrated_schema_matches_the_models(db):
    inspector = inspect(create_engine(f"sqlite:///{db}"))
    for table in Base.metadata.sorted_tables:
        columns = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        foreign = {
            (fk["referred_table"], tuple(fk["constrained_columns"]))
            for fk in inspector.get_foreign_keys(table.name)
        }
        assert foreign == {(fk.column.table.name, (fk.parent.name,)) for fk in table.foreign_keys}


def test_missing_database_is_not_created(tmp_path):
    with pytest.raises(CordmapError, match="no study database.*cordmap study init"):
        Registry.open(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_database_from_a_newer_cordmap_is_refused(db):
    with sqlite3.connect(db) as conn:
        conn.execute("insert into schema_version values (99, 'future', '2030-01-01')")
    with pytest.raises(
        CordmapError, match="schema version 99, newer than this cordmap.*upgrade cordmap"
    ):
        Registry.open(db)
    with pytest.raises(CordmapError, match="newer"):
        init_registry(db)


def test_older_database_is_upgraded_by_init_keeping_its_records(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        migrations.migrate(conn, 0)  # then drop back to version 1, as an old cordmap left it
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "drop table outcomes; drop table surgeries; drop table plans; "
            "delete from schema_version where version = 2; "
            "insert into participants (id, sex) values ('P07', 'F');"
        )
    with pytest.raises(CordmapError, match="older than this cordmap's 2.*cordmap study init"):
        Registry.open(path)
    assert init_registry(path).applied == [2]
    with Registry.open(path) as registry:
        registry.record_surgery("P07", coverage_pct=81.0, duration_min=150)
        assert registry.participant("P07")["participant"]["sex"] == "F"


def test_a_failing_migration_leaves_the_database_as_it_was(db, monkeypatch):
    def broken(conn):
        conn.exec_driver_sql("create table half_done (x integer)")
        raise RuntimeError("disk full")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, (3, "broken", broken)])
    monkeypatch.setattr(migrations, "LATEST_VERSION", 3)
    with pytest.raises(RuntimeError):
        init_registry(db)
    assert versions(db) == [1, 2]
    assert "half_done" not in inspect(create_engine(f"sqlite:///{db}")).get_table_names()


def test_other_databases_and_files_are_refused(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("create table patients (name text)")
    with pytest.raises(CordmapError, match="not a cordmap study registry"):
        Registry.open(other)
    text = tmp_path / "notes.db"
    text.write_text("these are not the tables you are looking for\n" * 100)
    with pytest.raises(CordmapError, match="not a readable study database"):
        Registry.open(text)


# -- participants ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, message",
    [
        ({"id": "Jane Doe"}, "not a pseudonymous id"),
        ({"id": "P1", "sex": "female"}, "not one of F, M, X"),
        ({"id": "P1", "ais_grade": "F"}, "not an AIS grade"),
        ({"id": "P1", "injury_level": "T13"}, "not a neurological level"),
        ({"id": "P1", "age_at_implant": "thirty"}, "not a number"),
        ({"id": "P1", "age_at_implant": "30", "years_since_injury": "31"}, "exceeds the age"),
        ({"sex": "F"}, "id is missing"),
    ],
)
def test_participant_fields_are_checked(fields, message):
    with pytest.raises(CordmapError, match=message):
        validate_participant(fields)


def test_participant_fields_are_normalised():
    p = validate_participant(
        {
            "id": "P01",
            "sex": "f",
            "ais_grade": "b",
            "injury_level": "t4",
            "age_at_implant": "41.5",
            "group": " 3d ",
        }
    )
    assert (p["sex"], p["ais_grade"], p["injury_level"], p["age_at_implant"], p["group"]) == (
        "F",
        "B",
        "T4",
        41.5,
        "3d",
    )


# -- CSV import -----------------------------------------------------------------------------
def write_csv(tmp_path, *lines, header=HEADER):
    path = tmp_path / "participants.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def test_csv_import_registers_every_row(db, tmp_path):
    path = write_csv(tmp_path, "P01,F,34,5,T4,A,Specify 5-6-5,3d", "P02,M,,,,,,conventional")
    with Registry.open(db) as registry:
        assert import_participants_csv(registry, path) == ["P01", "P02"]
        p1, p2 = registry.participants()
    assert (p1.age_at_implant, p1.injury_level, p1.group) == (34.0, "T4", "3d")
    assert p2.age_at_implant is None and p2.group == "conventional"


@pytest.mark.parametrize(
    "header, lines, message",
    [
        ("id,sex,group", ["P01,F,a"], "missing column.*age_at_implant"),
        (
            HEADER + ",date_of_birth",
            ["P01,F,34,5,T4,A,S,a,1980-01-01"],
            "date_of_birth would store identifying",
        ),
        (
            "patient_name," + HEADER,
            ["Jane,P01,F,34,5,T4,A,S,a"],
            "patient_name would store identifying",
        ),
        (HEADER + ",notes", ["P01,F,34,5,T4,A,S,a,x"], "unknown column.*notes"),
        (
            HEADER,
            ["P01,F,34,5,T4,A,S,a", "P02,M,30,2,C5,B,S,b", "P01,M,30,2,C5,B,S,b"],
            "P01 appears twice \\(rows 2 and 4\\)",
        ),
        (HEADER, ["P01,F,34,5,T4,A,S,a", "P02,M,30,2,C5,Q,S,b"], "row 3: ais_grade 'Q'"),
        (HEADER, [], "no participant rows"),
        (HEADER, ["P01,F,34,inf,T4,A,S,a"], "years_since_injury 'inf' is not a finite number"),
        (HEADER, ["P01,F,nan,2,T4,A,S,a"], "age_at_implant 'nan' is not a finite number"),
        (HEADER, ["P01,F,34,5,T4"], "row 2 has fewer cells than the header"),
        (
            HEADER,
            ["P072,F,34,5,T4,A,S,a", "p072,M,30,2,C5,B,S,b"],
            "p072 appears twice.*regardless of case",
        ),
        (HEADER, ["P01,F,34,5,T4,A,S,\x1b[2Ja"], "group .* holds control characters"),
    ],
)
def test_bad_csv_is_refused_whole(db, tmp_path, header, lines, message):
    path = write_csv(tmp_path, *lines, header=header)
    with Registry.open(db) as registry, pytest.raises(CordmapError, match=message):
        import_participants_csv(registry, path)
    assert participant_count(db) == 0


def test_csv_with_an_already_registered_participant_writes_nothing(db, tmp_path):
    with Registry.open(db) as registry:
        registry.add_participants([validate_participant({"id": "P03"})])
        path = write_csv(
            tmp_path, "P01,F,34,5,T4,A,S,a", "P02,M,30,2,C5,B,S,b", "P03,M,30,2,C5,B,S,b"
        )
        with pytest.raises(CordmapError, match="P03 is already registered.*nothing was written"):
            import_participants_csv(registry, path)
        path = write_csv(tmp_path, "p03,M,30,2,C5,B,S,b")
        with pytest.raises(
            CordmapError, match="p03 is already registered.*as P03 \\(ids differ only in case"
        ):
            import_participants_csv(registry, path)
    assert participant_count(db) == 1


# -- scans, segmentations, training set ------------------------------------------------------
def make_case(tmp_path, name: str) -> str:
    schema = LabelSchema.load()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    image = np.random.default_rng(0).random((8, 8, 6)).astype(np.float32)
    labels = np.zeros((8, 8, 6), np.uint16)
    labels[3:5, 3:5, 1:5] = schema.find("segment", "L1").id
    write_nifti(Volume(image, affine), tmp_path / f"{name}-image.nii.gz")
    write_nifti(LabelVolume(labels, affine, schema=schema), tmp_path / f"{name}-labels.nii.gz")
    import_case(
        tmp_path / f"{name}-image.nii.gz",
        tmp_path / name,
        labels_source=tmp_path / f"{name}-labels.nii.gz",
    )
    return str((tmp_path / name).resolve())


def test_reviewed_segmentations_become_the_training_list(db, tmp_path):
    case_1, case_2 = make_case(tmp_path, "case-1"), make_case(tmp_path, "case-2")
    with Registry.open(db) as registry:
        registry.add_participants([validate_participant({"id": i}) for i in ("P01", "P02")])
        registry.add_scan("P01", case_1, made_by={"manual": "rater-A"})
        registry.add_scan("P02", case_2)
        with pytest.raises(CordmapError, match="no reviewed segmentations"):
            write_training_list(registry, tmp_path / "train.json")
        (scan,) = registry.participant("P01")["scans"]
        (segmentation,) = scan["segmentations"]
        assert (segmentation["source"], segmentation["made_by"], segmentation["reviewed"]) == (
            "manual",
            "rater-A",
            False,
        )
        registry.review(segmentation["id"], "reviewer-B")
        assert write_training_list(registry, tmp_path / "train.json") == [case_1]
        with pytest.raises(CordmapError, match="already registered"):
            registry.add_scan("P02", case_1)
        with pytest.raises(CordmapError, match="P09 is not registered"):
            registry.add_scan("P09", case_2)
    assert json.loads((tmp_path / "train.json").read_text()) == [case_1]


def test_cohort_rows_carry_the_latest_outcome_and_plan(db):
    with Registry.open(db) as registry:
        registry.add_participants([validate_participant({"id": "P01", "group": "a"})])
        registry.add_plan("P01", coverage_pct=70.0)
        registry.add_plan("P01", coverage_pct=90.0)
        registry.record_surgery("P01", coverage_pct=85.0, duration_min=200.0)
        registry.add_outcome("P01", "walking_distance_m", 40.0, weeks_after_implant=24)
        registry.add_outcome("P01", "walking_distance_m", 10.0, weeks_after_implant=4)
        with pytest.raises(CordmapError, match="percentage"):
            registry.record_surgery("P01", coverage_pct=140.0)
        (row,) = registry.cohort()
    assert (
        row["planned_coverage"],
        row["coverage"],
        row["surgery_time"],
        row["walking_distance_m"],
    ) == (90.0, 85.0, 200.0, 40.0)


# -- DICOM de-identification -----------------------------------------------------------------
def write_dicom(path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientSex = "MR", "F"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-0042", "19800101"
    ds.InstitutionName, ds.StudyDate, ds.ReferringPhysicianName = (
        "General Hospital",
        "20240102",
        "Who^Dr",
    )
    ds.ImagePositionPatient, ds.PixelSpacing, ds.SliceThickness = [1.0, 2.0, 3.0], [0.8, 0.8], 3.0
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(16, dtype=np.uint16).tobytes()
    ds.add_new(0x00091010, "LO", "private vendor note")
    reference = Dataset()
    reference.PatientBirthDate = "19800101"
    reference.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedPatientSequence = [reference]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_is_deidentified_into_a_copy(tmp_path):
    source = tmp_path / "export"
    write_dicom(source / "series1" / "IM0001")
    (source / "DICOMDIR.txt").write_text("not dicom")
    before = hashlib.sha256((source / "series1" / "IM0001").read_bytes()).hexdigest()
    assert deidentify_dicom(source, tmp_path / "clean", "P001") == 1
    assert hashlib.sha256((source / "series1" / "IM0001").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (tmp_path / "clean").rglob("*") if p.is_file()) == ["IM0001"]
    ds = pydicom.dcmread(tmp_path / "clean" / "series1" / "IM0001")
    assert (str(ds.PatientName), ds.PatientID, ds.PatientIdentityRemoved) == ("P001", "P001", "YES")
    for keyword in ("PatientBirthDate", "InstitutionName", "StudyDate", "ReferringPhysicianName"):
        assert keyword not in ds
    assert "PatientBirthDate" not in ds.ReferencedPatientSequence[0]
    assert not any(element.tag.is_private for element in ds)
    assert ds.PatientSex == "F" and list(ds.ImagePositionPatient) == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(ds.pixel_array, np.arange(16).reshape(4, 4))
    assert b"Doe^Jane" not in (tmp_path / "clean" / "series1" / "IM0001").read_bytes()
    original = pydicom.dcmread(source / "series1" / "IM0001")
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    reference = ds.ReferencedPatientSequence[0].ReferencedSOPInstanceUID
    assert reference != original.ReferencedPatientSequence[0].ReferencedSOPInstanceUID
    with pytest.raises(CordmapError, match="not empty"):
        deidentify_dicom(source, tmp_path / "clean", "P001")


def test_deidentify_refuses_a_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(CordmapError, match="holds no DICOM files"):
        deidentify_dicom(tmp_path / "empty", tmp_path / "clean", "P001")
    assert not (tmp_path / "clean").exists()


def test_only_deidentified_dicom_cases_enter_the_study(db, tmp_path):
    image = Volume(
        np.random.default_rng(1).random((6, 5, 4)).astype(np.float32) * 1000,
        np.diag([0.8, 0.8, 3.0, 1.0]),
    )
    export = write_dicom_series(
        image, tmp_path / "export", series_description="T2w axial", patient_id="MRN-0042"
    )
    for file in sorted(p for p in export.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(file)
        ds.PatientName, ds.PatientBirthDate = "Doe^Jane", "19800101"
        ds.save_as(file)
    import_case(export, tmp_path / "identified")
    deidentify_dicom(export, tmp_path / "clean", "P001")
    import_case(tmp_path / "clean", tmp_path / "case")
    series = {
        pydicom.dcmread(f).SeriesInstanceUID for f in (tmp_path / "clean").rglob("*") if f.is_file()
    }
    assert len(series) == 1 and series.isdisjoint(
        {pydicom.dcmread(next(f for f in export.rglob("*") if f.is_file())).SeriesInstanceUID}
    )
    with Registry.open(db) as registry:
        registry.add_participants([validate_participant({"id": "P001"})])
        with pytest.raises(
            CordmapError, match="still identifies the patient.*cordmap study deidentify"
        ):
            registry.add_scan("P001", tmp_path / "identified")
        registry.add_scan("P001", tmp_path / "case")
        assert len(registry.participant("P001")["scans"]) == 1
    np.testing.assert_array_equal(
        Case.open(tmp_path / "case").image().array, Case.open(tmp_path / "identified").image().array
    )
