# The Bridgehead worker (and starter CLI). Same code as the embedded stack; configuration only.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridgehead ./bridgehead
COPY workflows ./workflows
COPY activities ./activities
COPY starter ./starter
COPY policies ./policies
COPY worker.py ./
RUN pip install --no-cache-dir .
USER nobody
ENV BRIDGEHEAD_STATE_DIR=/tmp/bridgehead
CMD ["python", "worker.py"]
