"""Backbones and adaptation strategies.

- registry.py: backbone and strategy specs from configs/models and configs/strategies (YAML)
- encoders.py: building each library's architecture from a spec
- checkpoints.py: safe checkpoint reading, strict key matching, weight fingerprints
- loaders.py: load_backbone(name, weights=pretrained|random|PATH), save_backbone
- strategies.py: resolve a (backbone, strategy) pair, build_classifier (LP/FFT/LoRA/VeRA/BitFit/IA3)
- params.py: trainable-parameter accounting (peft's convention)
- adapters.py: save_trained / load_trained
- matrix.py: the backbone x strategy matrix of `progbench models`
"""
