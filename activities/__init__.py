"""Activities: all I/O lives here (boto3, DynamoDB registry, email, S3 drop-box).

Activities are synchronous ``def`` methods on dependency-injected classes and run in the worker's
bounded thread pool. Assumed-role credentials never leave an activity: activities return ids and
states only (whatever an activity returns is stored in workflow history).
"""
