# The Bridgehead worker (and starter CLI). Same code as the embedded stack; configuration only.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY bridgehead ./bridgehead
COPY workflows ./workflows
COPY activities ./activities
COPY starter ./starter
COPY policies ./policies
COPY worker.py ./
# The runtime dependencies at the versions the tests pass with (the lock as constraints).
RUN pip install --no-cache-dir -c requirements.lock .
USER nobody
ENV BRIDGEHEAD_STATE_DIR=/tmp/bridgehead
STOPSIGNAL SIGTERM
CMD ["python", "worker.py"]
