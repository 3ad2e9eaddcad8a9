"""Adapters for the reference study's four datasets: presets of `progbench prepare`.

Each adapter is its preset (progbench/configs/datasets/<name>.yaml: column map, rules, outputs,
the choices made where facts are missing, what the study reported) plus the code its release
needs: aiforcovid (releases, lung boxes), covid19_ar (TCIA layout, ICU coding), cocross (table
and image folder), stonybrook (TCIA layout, two manifests). docs/DATASETS.md describes them.
"""
