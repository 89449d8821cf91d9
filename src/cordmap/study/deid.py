"""De-identify a DICOM export before its case enters a study.

Copies every DICOM file of a folder to a new folder with the attributes that identify
the person, the institution or the date of the visit removed (a subset of the DICOM
PS3.15 basic confidentiality profile), private tags dropped, the patient's name and id
replaced by the participant's pseudonym, and instance UIDs replaced consistently.
Geometry, pixel data and the sequence parameters are kept, so the copy imports exactly
as the original. The source folder is never modified; the output appears whole or not
at all, in a new folder.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pydicom.multival
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from cordmap.atomic import atomic_dir
from cordmap.errors import CordmapError
from cordmap.study.registry import PSEUDONYM

#: Attributes removed from every file (keywords of the DICOM dictionary).
REMOVED = (
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "MilitaryRank",
    "BranchOfService",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "ResponsiblePerson",
    "PatientInsurancePlanCodeSequence",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "RequestingPhysician",
    "StationName",
    "DeviceSerialNumber",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "InstanceCreationTime",
    "AcquisitionDateTime",
    "PatientAge",
)
REMOVED_SET = frozenset(REMOVED)
#: Attributes replaced by the pseudonym.
PSEUDONYMISED = ("PatientName", "PatientID")
#: Instance UIDs (they can embed dates, device serials or site roots): replaced by UIDs
#: derived from the pseudonym and the original, so that series, frames of reference and
#: references stay consistent across the files of an export.
REMAPPED_UIDS = frozenset(
    (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "MediaStorageSOPInstanceUID",
        "FrameOfReferenceUID",
        "ReferencedSOPInstanceUID",
        "ReferencedFrameOfReferenceUID",
        "IrradiationEventUID",
        "StorageMediaFileSetUID",
        "SynchronizationFrameOfReferenceUID",
        "ReferencedSOPInstanceUIDInFile",
    )
)


def deidentify_dicom(source: str | Path, out: str | Path, pseudonym: str) -> int:
    """Write de-identified copies of the DICOM files under `source` to `out`; return how many.

    Sub-folders are kept; files that are not DICOM are not copied.
    """
    source, out = Path(source), Path(out)
    if not PSEUDONYM.match(pseudonym):
        raise CordmapError(
            f"'{pseudonym}' is not a pseudonymous id; use up to 32 letters, digits, - or _"
        )
    if not source.is_dir():
        raise CordmapError(f"{source} is not a folder; pass the folder of the DICOM export")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise CordmapError(f"{out} lies inside {source}; write the de-identified copy elsewhere")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CordmapError(
            f"{out} already exists and is not empty; pass a new folder for the de-identified copy"
        )
    files = sorted(p for p in source.rglob("*") if p.is_file())
    written = 0
    with atomic_dir(out) as tmp:
        for file in files:
            try:
                dataset = pydicom.dcmread(file)
            except (InvalidDicomError, OSError, ValueError):
                continue
            deidentify(dataset, pseudonym)
            target = tmp / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            dataset.save_as(target)
            written += 1
        if not written:
            raise CordmapError(
                f"{source} holds no DICOM files; pass the folder of the DICOM export"
            )
    return written


def deidentify(dataset: pydicom.Dataset, pseudonym: str) -> pydicom.Dataset:
    """Strip identifying attributes from `dataset` and its sequences in place; return it."""
    dataset.remove_private_tags()

    def strip(ds: pydicom.Dataset, element) -> None:
        if element.keyword in REMOVED_SET:
            del ds[element.tag]
        elif element.keyword in REMAPPED_UIDS and element.value:
            element.value = _new_uid(element.value, pseudonym)

    dataset.walk(strip)
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in dataset:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    for keyword in PSEUDONYMISED:
        setattr(dataset, keyword, pseudonym)
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = "cordmap: DICOM PS3.15 basic profile subset, pseudonymised"
    return dataset


def _new_uid(value, pseudonym: str):
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [_new_uid(v, pseudonym) for v in value]
    return generate_uid(entropy_srcs=["cordmap de-identification", pseudonym, str(value)])


def require_deidentified(case) -> None:
    """Refuse a case (a `cordmap.case.Case`) imported from a DICOM export that still
    identifies the patient; `cordmap import` records this in case.json ("source") from the
    export's PatientIdentityRemoved, which files written by `deidentify_dicom` carry."""
    source = case.manifest.get("source", {})
    if source.get("format") == "dicom" and not source.get("patient_identity_removed"):
        raise CordmapError(
            f"case {case.root} was imported from a DICOM export that still identifies the "
            "patient; run `cordmap study deidentify EXPORT CLEAN --participant ID`, import the "
            "case again from CLEAN, then register it"
        )
