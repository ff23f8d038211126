"""flowkernel-storage-s3: ``s3://bucket/prefix`` datastore roots through obstore."""
