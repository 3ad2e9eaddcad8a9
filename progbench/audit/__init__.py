"""`progbench audit`: the controls every medical-imaging benchmark should run, on the cached
features and the manifest, written to `audit.json` (docs/METHODOLOGY.md, "Audit").

- check.py: the Check protocol (name, skip reason, run) and CheckResult (one JSON entry).
- checks.py: the checks, in the order they run.
- context.py: AuditConfig (thresholds) and AuditContext (task, folds, shared probes).
- stats.py: MCC with a patient-bootstrap CI, grouped CV, the permutation p-value.
- lp.py: the project's LP head refitted on every fold, and label permutation.
- metadata.py: acquisition metadata from the image headers and file names.
- shortcut.py, centre.py, randominit.py, permutation.py: one check each.
- runner.py: `run_audit` and where audit.json lives.
"""
