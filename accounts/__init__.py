"""Who may come in: sign-up modes and invite codes, and the throttles on logging in
and signing up."""
