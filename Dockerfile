# EmotionThinker, explained: the web app on a CUDA GPU.
#   docker build -t emotionthinker .
#   docker run --gpus all -p 7860:7860 -v et-cache:/cache emotionthinker
# The weights are not baked in: they download on first start into the /cache volume (only the
# thinker's shards, ~16 GB) and are reused after. Not built in this project's CI (no Docker
# engine there): kept simple so that it can be checked by reading. The compilers are for
# torch.compile (Triton builds a small helper at run time; without them the app decodes eagerly).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 \
    HF_HOME=/cache/huggingface ET_QUANT_CACHE=/cache/quantized ET_HOST=0.0.0.0 ET_PORT=7860
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip espeak-ng \
    libportaudio2 gcc g++ python3-dev \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 app && mkdir -p /cache && chown app:app /cache
WORKDIR /home/app/emotionthinker
COPY --chown=app:app requirements.txt .
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt
COPY --chown=app:app . .

USER app
VOLUME ["/cache"]
EXPOSE 7860
CMD ["/opt/venv/bin/python", "app.py"]
