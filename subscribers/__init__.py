"""SNS Purchase subscriber Lambdas and the Stripe webhook worker."""
