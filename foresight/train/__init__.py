"""The trainer: loop, optimizer and schedules, checkpoints, FLOPs/MFU, distributed set-up."""
