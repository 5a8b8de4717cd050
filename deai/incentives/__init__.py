"""Incentives: what each party's contribution was worth (deai.incentives.valuation, .shapley)."""
