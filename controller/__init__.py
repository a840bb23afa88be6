"""Policy side: behaviour prior, KL-constrained actor, gated controller, training loop."""
