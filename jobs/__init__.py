"""Programs that run repalign at scale: Ray jobs, and Dask code that aligns stores."""
