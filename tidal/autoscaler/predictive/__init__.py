"""Predictive autoscaling, pure (research/predictive.md §1.4, §6): periods -> forecast -> plan
-> policy, with cron bounds and a walk-forward backtest."""
