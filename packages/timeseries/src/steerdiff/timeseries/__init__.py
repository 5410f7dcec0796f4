"""steerdiff-timeseries: TSDiff, one unconditional diffusion model that forecasts, imputes, refines and
synthesizes time series through self-guidance (Kollovieh et al., NeurIPS 2023).

    from steerdiff.timeseries import TSDiffConfig, TSDiffPipeline, load_dataset

Everything listed in ``__all__`` is public; the submodules (``data``, ``model``, ``forecast``, ``refine``,
``synthesis``, ``evaluation``, ``metrics``, ``benchmark``) hold the same names and more detail.
"""

from importlib import metadata as _metadata

from .baselines import LinearForecaster, seasonal_naive
from .data import (
    DATASETS,
    SCALINGS,
    Frequency,
    Series,
    TestWindows,
    WindowSpec,
    from_csv,
    from_entries,
    from_pandas,
    load_dataset,
    load_series,
    parse_freq,
    split_last,
    synthetic_series,
    to_entries,
    training_windows,
)
from .evaluation import METHODS, compare_forecasters, compare_missing, compare_training_data
from .forecast import (
    SCENARIOS,
    ForecastRangeWarning,
    GuidanceDiverged,
    complete,
    forecast,
    impute,
    missing_mask,
    out_of_range,
    with_missing,
)
from .guidance import GUIDANCES, self_guidance
from .metrics import crps, evaluate_forecast
from .model import DOMAIN, NUM_STEPS, SCHEDULE, DataSplit, TSDiff, TSDiffConfig
from .pipeline import TSDiffPipeline
from .plots import fan_chart
from .readers import read_series, series_from_frame
from .refine import refine
from .synthesis import generate, linear_predictive_score
from .tasks import TimeSeriesTask, guided_tasks

try:
    __version__ = _metadata.version("steerdiff-timeseries")
except _metadata.PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    # the entry point
    "TSDiffPipeline",
    # data
    "Series",
    "Frequency",
    "WindowSpec",
    "TestWindows",
    "DATASETS",
    "SCALINGS",
    "load_dataset",
    "load_series",
    "read_series",
    "series_from_frame",
    "from_csv",
    "from_entries",
    "from_pandas",
    "to_entries",
    "parse_freq",
    "split_last",
    "training_windows",
    "synthetic_series",
    # the model
    "TSDiff",
    "TSDiffConfig",
    "DataSplit",
    "DOMAIN",
    "SCHEDULE",
    "NUM_STEPS",
    # predict, refine, synthesize
    "forecast",
    "impute",
    "complete",
    "missing_mask",
    "with_missing",
    "SCENARIOS",
    "GUIDANCES",
    "GuidanceDiverged",
    "ForecastRangeWarning",
    "out_of_range",
    "self_guidance",
    "refine",
    "generate",
    "linear_predictive_score",
    # baselines, metrics, comparisons, plots
    "seasonal_naive",
    "LinearForecaster",
    "crps",
    "evaluate_forecast",
    "METHODS",
    "compare_forecasters",
    "compare_missing",
    "compare_training_data",
    "fan_chart",
    "guided_tasks",  # the guidance matrix's tasks (steerdiff.core.matrix)
    "TimeSeriesTask",
]
