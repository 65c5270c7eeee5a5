"""The user's arrays from .csv, .npy and .npz files, read within a memory budget."""
