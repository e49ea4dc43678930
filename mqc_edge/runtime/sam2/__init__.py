"""SAM 2 mode: SAM 2's memory bank (conditioning frame + recent frames) and the mode that runs it."""
