"""Datasets: the data home, the cache directory, real-data loaders with their downloads, and
synthetic crowds.

Loaders look for files in the data home (``$CROWDTUNE_DATA``, else ``~/.cache/crowdtune``), one
folder per dataset, download them from the canonical source where there is one, and otherwise
fail with an error that names the missing file, the expected layout and where to get it. The
data home is only read; what crowdtune derives goes under the cache directory
(``$CROWDTUNE_CACHE``, else ``~/.cache/crowdtune``; :func:`cache_dir`). Each named dataset has
its own module (:mod:`~crowdtune.datasets.pandalm`, ``llmeval2``, ``mt_bench``,
``hh_rlhf``, ``car``, ``goemotions``, ``movielens``); :mod:`~crowdtune.datasets.registry` maps
the ``@name`` of a command-line ``SRC`` to its loader. Files of feedback records have one
module per kind: :mod:`~crowdtune.datasets.comparisons`, :mod:`~crowdtune.datasets.revisions`
and :mod:`~crowdtune.datasets.ratings`; :mod:`~crowdtune.datasets.items` reads the items of
revision and rating projects.
"""

from crowdtune.datasets.car import load_car, load_car_revisions
from crowdtune.datasets.comparisons import (
    read_arena_csv,
    read_arena_pairs,
    read_jsonl,
    trl_rows,
    write_arena_csv,
    write_jsonl,
    write_trl_jsonl,
)
from crowdtune.datasets.goemotions import (
    GOEMOTIONS_LABELS,
    GoEmotionsSplit,
    load_goemotions,
)
from crowdtune.datasets.hh_rlhf import load_hh_rlhf, parse_hh_transcript
from crowdtune.datasets.home import (
    DatasetDownloadError,
    DatasetFormatError,
    DatasetMissingError,
    DatasetRepairWarning,
    cache_dir,
    cache_home,
    data_home,
    dataset_dir,
)
from crowdtune.datasets.items import (
    read_items,
    read_rating_items,
    read_revision_items,
    revision_items,
)
from crowdtune.datasets.llmeval2 import load_llmeval2
from crowdtune.datasets.movielens import (
    MOVIELENS_GENRES,
    MOVIELENS_SHA256,
    MOVIELENS_URL,
    download_movielens,
    movielens_genre_matrix,
)
from crowdtune.datasets.mt_bench import load_mt_bench
from crowdtune.datasets.pandalm import load_pandalm
from crowdtune.datasets.ratings import (
    rating_csv_rows,
    rating_kto_rows,
    read_ratings_jsonl,
    write_rating_kto_jsonl,
    write_ratings_csv,
    write_ratings_jsonl,
)
from crowdtune.datasets.registry import (
    PREFERENCE_DATASETS,
    REVISION_DATASETS,
    load_comparisons,
    load_pairs,
    load_revisions,
)
from crowdtune.datasets.revisions import (
    read_revisions_jsonl,
    revision_sft_rows,
    revision_trl_rows,
    write_revision_sft_jsonl,
    write_revision_trl_jsonl,
    write_revisions_jsonl,
)
from crowdtune.datasets.synthetic import (
    CrowdDistribution,
    fit_crowd_distribution,
    movielens_crowd_distribution,
    synthetic_crowd,
)

__all__ = [
    "GOEMOTIONS_LABELS",
    "MOVIELENS_GENRES",
    "MOVIELENS_SHA256",
    "MOVIELENS_URL",
    "PREFERENCE_DATASETS",
    "REVISION_DATASETS",
    "CrowdDistribution",
    "DatasetDownloadError",
    "DatasetFormatError",
    "DatasetMissingError",
    "DatasetRepairWarning",
    "GoEmotionsSplit",
    "cache_dir",
    "cache_home",
    "data_home",
    "dataset_dir",
    "download_movielens",
    "fit_crowd_distribution",
    "load_car",
    "load_car_revisions",
    "load_comparisons",
    "load_pairs",
    "load_goemotions",
    "load_hh_rlhf",
    "load_llmeval2",
    "load_mt_bench",
    "load_pandalm",
    "load_revisions",
    "movielens_crowd_distribution",
    "movielens_genre_matrix",
    "parse_hh_transcript",
    "rating_csv_rows",
    "rating_kto_rows",
    "read_arena_csv",
    "read_arena_pairs",
    "read_items",
    "read_jsonl",
    "read_rating_items",
    "read_ratings_jsonl",
    "read_revision_items",
    "read_revisions_jsonl",
    "revision_items",
    "revision_sft_rows",
    "revision_trl_rows",
    "synthetic_crowd",
    "trl_rows",
    "write_arena_csv",
    "write_jsonl",
    "write_rating_kto_jsonl",
    "write_ratings_csv",
    "write_ratings_jsonl",
    "write_revision_sft_jsonl",
    "write_revision_trl_jsonl",
    "write_revisions_jsonl",
    "write_trl_jsonl",
]
