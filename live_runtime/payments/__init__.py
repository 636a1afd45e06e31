"""Payment providers: signed notifications in (Stripe's scheme), and a sandbox that signs them."""
