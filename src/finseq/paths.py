"""Where the pipeline reads and writes, relative to the project root: defined here once.

dvc.yaml names the same paths; tests/test_structure.py checks that the two agree.
"""

PARAMS_FILE = "params.yaml"
RAW_DIR = "data/raw"
PREPARED_DIR = "data/prepared"
WINDOWS_DIR = "data/windows"
MODEL_FILE = "models/model.pth"
FOLD_MODELS_DIR = "models/folds"
DATA_METRICS = "metrics/data.json"
TRAIN_LIVE_DIR = "metrics/train"
EVAL_METRICS = "metrics/eval.json"
CONFUSION_FILE = "metrics/confusion_test.csv"
PREDICTIONS_FILE = "metrics/predictions.csv"
EQUITY_FILE = "metrics/equity.csv"
RELIABILITY_FILE = "metrics/reliability.csv"
LOCKBOX_METRICS = "metrics/lockbox.json"
