"""Who may come in: sign-up modes and invite codes, the throttles on logging in and
signing up, and the account page (what the user spent, from limits)."""
