"""Backbones and adaptation strategies.

- registry.py: backbone and strategy specs from configs/models and configs/strategies (YAML)
- sources/: one `Source` per library (torchvision, transformers, open_clip, MedCLIP): building the
  architecture, loading hub / local / checkpoint weights, fetching them; offline-mode handling
- encoders.py: build a backbone's architecture (random weights) from its spec, via its source
- checkpoints.py: safe checkpoint reading, strict key matching, weight fingerprints
- loaders.py: load_backbone(name, weights=pretrained|random|PATH, weights_dir=), save_backbone
- weights.py: local weights folders (`progbench weights fetch / ls`, $PROGBENCH_WEIGHTS_DIR)
- strategies/: one class per strategy kind (LP, FFT, LoRA, VeRA, IA3, BitFit, scikit-learn),
  one registry, build_classifier, save_trained / load_trained
- params.py: trainable-parameter accounting (peft's convention)
- matrix.py: the backbone x strategy matrix of `progbench models`
"""
