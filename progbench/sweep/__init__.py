"""Sweeps: plan the grid of cells and run it on local workers or on SLURM (through submitit)."""
