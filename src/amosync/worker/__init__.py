"""The worker: claims due jobs with leases, one account per worker at a time, retries."""
