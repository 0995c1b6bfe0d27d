"""Predictive autoscaling, pure (docs/predictive.md): periods -> forecast -> plan, idle gaps ->
priced warm decision, combined with the KPA by the policy within cron bounds; and a walk-forward
backtest."""
