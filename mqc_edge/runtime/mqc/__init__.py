"""MQC mode: TMCC motion calibration, the DAMI banks, the quality gates, and the mode that runs them (CroBIM-V)."""
