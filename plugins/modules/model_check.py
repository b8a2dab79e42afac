#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: model_check
short_description: Check a deployed model - files against the backup manifest, quality floor, input data, drift, predictions
version_added: 0.1.0
author: sre.runbooks maintainers (@sre-runbooks)
description:
  - The Heart Disease runbook's model checks (C(validate_model_performance.py), C(analyze_predictions.py),
    C(validate_recent_data.py), C(validate_model.py --full)) as one read-only module that runs on the model host.
  - V(files) checks the live files (named by the live version's backup manifest) against the manifest's sha256
    hashes; the archive itself is verified too.
  - V(performance) loads the live model files and scores the labelled O(sample), then compares accuracy, ROC AUC
    and F1 with O(floor). Loading is done by the ML system's own interpreter (O(python)), in a subprocess, because a
    pickle loads reliably only with the library versions that wrote it, and the module may run under the system
    Python without numpy. With O(api_url) and O(api_key) the same sample is also scored through the API's
    C(/predict/batch), which shows what the service really serves.
  - V(previous) unpacks the version before the live one from its verified backup into a temporary directory and
    scores it on the same sample, so the two versions are compared on equal terms.
  - V(data) checks the recent inputs (the prediction log's last O(data_window) entries of the last
    O(since_minutes), or O(recent_data)) for missing values, wrong types and values outside the 13 UCI features'
    valid ranges.
  - V(drift) computes the population stability index of each feature of the recent inputs against O(reference)
    (deciles of the reference for numeric features, codes for categorical ones) and bands it with O(psi_bands)
    (stable below 0.1, moderate to 0.25, significant above).
  - V(predictions) summarises the prediction log of the last O(since_minutes) (volume, model versions, positive
    rate and its shift from the reference prevalence, mean probability) and the API log's C(/predict) requests
    (5xx error rate, latency percentiles).
  - RV(verdict) names what is wrong (corrupt_model, bad_model, regressed, drift, bad_data or ok) and
    RV(recommendation) what a model recovery should do (none, reinstall the live version, roll back to a version,
    escalate).
  - Read-only; runs the same in check mode. Model files are unpickled, which runs code from them, exactly as the
    service does when it loads them; point it only at the system's own files.
options:
  home:
    description: The installation's home directory, for example V(/opt/heart-disease). Relative paths below are relative to it.
    type: path
    required: true
  checks:
    description: The checks to run.
    type: list
    elements: str
    choices: [files, performance, previous, data, drift, predictions]
    default: [files, performance, previous, data, drift, predictions]
  backup_dir:
    description: Directory of the versions' backup archives.
    type: str
    default: backups
  archive_pattern:
    description: File name of a version's archive in O(backup_dir); C({version}) stands for the version.
    type: str
    default: backup_{version}.tar.gz
  version_file:
    description: The file naming the live version.
    type: str
    default: models/VERSION
  model_file:
    description: The model file (a joblib pickle with C(predict_proba)), as listed in the manifest.
    type: str
    default: models/sklearn_mlp_model.joblib
  preprocessor_file:
    description: The preprocessor (a joblib pickle with C(transform)) applied before the model; empty for none.
    type: str
    default: data/processed/preprocessor.joblib
  sample:
    description: A labelled CSV (the 13 feature columns and C(target)) to score.
    type: str
    default: data/validation/sample.csv
  reference:
    description: The reference inputs for drift (CSV with the 13 feature columns; with C(target) it also gives the prevalence).
    type: str
    default: data/raw/heart.csv
  recent_data:
    description: A CSV of recent inputs to check instead of the prediction log's.
    type: str
  predictions_log:
    description: The prediction log, JSON lines with C(timestamp), C(features), C(prediction), C(probability), C(model_version).
    type: str
    default: logs/predictions.log
  api_log:
    description: The API log with C(request ... path= status= duration_ms=) access lines; empty to skip the error rate.
    type: str
    default: logs/api.log
  since_minutes:
    description: How far back the prediction and API logs are read.
    type: float
    default: 15
  data_window:
    description: At most this many of the most recent logged inputs are checked (the worker's drift window is 200).
    type: int
    default: 200
  min_drift_rows:
    description: Fewer recent inputs than this and drift is reported as C(insufficient_data).
    type: int
    default: 50
  python:
    description:
      - The interpreter that loads the model. V(auto) takes the one the O(service) unit runs (its ExecStart), else the module's own.
    type: str
    default: auto
  service:
    description: The systemd unit whose interpreter V(auto) uses.
    type: str
    default: heart-disease-api
  floor:
    description: Minimum C(accuracy), C(roc_auc), C(f1); missing keys keep the runbook's 0.80, 0.85, 0.75.
    type: dict
    default: {}
  max_regression:
    description: A metric more than this below the previous version's on the same sample counts as a regression.
    type: float
    default: 0.05
  psi_bands:
    description: The PSI boundaries of moderate and significant drift.
    type: list
    elements: float
    default: [0.1, 0.25]
  max_invalid_ratio:
    description: The share of invalid recent inputs above which the data check fails.
    type: float
    default: 0.05
  class_shift_threshold:
    description: A positive rate further than this from the reference prevalence is flagged as a class balance shift.
    type: float
    default: 0.15
  decision_threshold:
    description: The probability from which a prediction is positive.
    type: float
    default: 0.5
  api_url:
    description: The API's base URL; with O(api_key) the sample is also scored through C(/predict/batch).
    type: str
  api_key:
    description: An API key for O(api_url) (sent as C(X-API-Key)).
    type: str
  validate_certs:
    description: Verify the API's TLS certificate.
    type: bool
    default: true
  timeout:
    description: Seconds allowed for loading and scoring one version, and for each API request.
    type: float
    default: 120
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Validate model performance, predictions and recent data (the runbook's Model Issues)
  sre.runbooks.model_check:
    home: /opt/heart-disease
  register: model

- name: Only the files against the manifest and the quality floor, with the served model too
  sre.runbooks.model_check:
    home: /opt/heart-disease
    checks: [files, performance]
    api_url: http://127.0.0.1:8000
    api_key: "{{ heart_disease_api_key }}"

- name: Drift of a day's exported inputs
  sre.runbooks.model_check:
    home: /opt/heart-disease
    checks: [data, drift]
    recent_data: /var/tmp/inputs-2026-11-23.csv
"""

RETURN = r"""
version:
  description: The live version (from O(version_file)).
  returned: always
  type: str
  sample: 20261123T084338Z
files:
  description: C(ok), C(archive), C(files) (expected and actual sha256 per file), C(mismatched), C(missing), C(manifest_metrics), C(error).
  returned: when V(files) is checked
  type: dict
model:
  description: C(loaded), C(model_type), C(error) when the live files do not load.
  returned: when V(performance) is checked
  type: dict
performance:
  description: C(metrics) (accuracy, roc_auc, f1, precision, recall, n_samples, positive_rate) of the live files on O(sample), C(below_floor), C(ok).
  returned: when V(performance) is checked
  type: dict
served:
  description: The same metrics through the API, the C(model_version) it reports, C(matches_live_version), C(ok).
  returned: when O(api_url) and O(api_key) are set
  type: dict
previous:
  description: The version before the live one, its C(metrics) on the same sample, C(manifest_metrics), C(delta) and C(regressed).
  returned: when V(previous) is checked
  type: dict
data:
  description: C(rows), C(invalid_rows), C(invalid_ratio), C(missing), C(wrong_type), C(out_of_range) per feature, C(examples), C(ok).
  returned: when V(data) is checked
  type: dict
drift:
  description: Per feature C(psi), C(band), C(reference_mean), C(recent_mean); C(significant), C(moderate), C(max_psi), C(status).
  returned: when V(drift) is checked
  type: dict
predictions:
  description: C(count), C(by_model_version), C(positive_rate), C(reference_positive_rate), C(class_balance_shift), C(class_balance_shifted),
    C(mean_probability), C(requests), C(server_errors), C(error_rate), C(latency_ms).
  returned: when V(predictions) is checked
  type: dict
backups:
  description: The backup archives oldest first with C(version), C(archive), C(created_at), C(metrics) from their manifest.
  returned: always
  type: list
  elements: dict
verdict:
  description: C(status) (ok, corrupt_model, bad_model, regressed, drift, bad_data) and the C(reasons).
  returned: always
  type: dict
recommendation:
  description: C(action) (none, reinstall, rollback, escalate), the C(version) to restore and the C(reason).
  returned: always
  type: dict
python:
  description: The interpreter that loaded the model.
  returned: when V(performance) or V(previous) is checked
  type: str
"""

import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.sre.runbooks.plugins.module_utils._model_check import CHECKS, ModelCheckError, run_checks
from ansible_collections.sre.runbooks.plugins.module_utils._release import ReleaseError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "home": {"type": "path", "required": True},
            "checks": {"type": "list", "elements": "str", "choices": list(CHECKS), "default": list(CHECKS)},
            "backup_dir": {"type": "str", "default": "backups"},
            "archive_pattern": {"type": "str", "default": "backup_{version}.tar.gz"},
            "version_file": {"type": "str", "default": "models/VERSION"},
            "model_file": {"type": "str", "default": "models/sklearn_mlp_model.joblib"},
            "preprocessor_file": {"type": "str", "default": "data/processed/preprocessor.joblib"},
            "sample": {"type": "str", "default": "data/validation/sample.csv"},
            "reference": {"type": "str", "default": "data/raw/heart.csv"},
            "recent_data": {"type": "str"},
            "predictions_log": {"type": "str", "default": "logs/predictions.log"},
            "api_log": {"type": "str", "default": "logs/api.log"},
            "since_minutes": {"type": "float", "default": 15},
            "data_window": {"type": "int", "default": 200},
            "min_drift_rows": {"type": "int", "default": 50},
            "python": {"type": "str", "default": "auto"},
            "service": {"type": "str", "default": "heart-disease-api"},
            "floor": {"type": "dict", "default": {}},
            "max_regression": {"type": "float", "default": 0.05},
            "psi_bands": {"type": "list", "elements": "float", "default": [0.1, 0.25]},
            "max_invalid_ratio": {"type": "float", "default": 0.05},
            "class_shift_threshold": {"type": "float", "default": 0.15},
            "decision_threshold": {"type": "float", "default": 0.5},
            "api_url": {"type": "str"},
            "api_key": {"type": "str", "no_log": True},
            "validate_certs": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 120},
        },
        required_together=[("api_url", "api_key")],
        supports_check_mode=True,
    )
    params = dict(module.params)
    for name in ("since_minutes", "timeout"):
        if params[name] <= 0:
            module.fail_json(msg=f"{name}: must be positive, got {params[name]}")
    for name in ("data_window", "min_drift_rows"):
        if params[name] < 1:
            module.fail_json(msg=f"{name}: must be at least 1, got {params[name]}")
    if "{version}" not in params["archive_pattern"] or "/" in params["archive_pattern"]:
        module.fail_json(msg=f"archive_pattern: must be a file name containing {{version}}, got {params['archive_pattern']!r}")
    try:
        params["floor"] = {str(k): float(v) for k, v in params["floor"].items()}
    except (TypeError, ValueError):
        module.fail_json(msg=f"floor: values must be numbers, got {params['floor']!r}")
    params["module_python"] = sys.executable
    try:
        result = run_checks(params)
    except (ModelCheckError, ReleaseError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"home: cannot read under {params['home']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
