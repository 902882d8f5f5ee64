# Sourced at the start of every device call (run from the repository root): puts the carried
# chunks (.gpu/c*, made by pack_data.py) back together as ../shared/data, and makes the carried
# packages (Lite0's weights, torch-model-archiver) importable. The device image has Python and
# torch but no registry to install from.
export PYTHONUNBUFFERED=1
root=$(pwd)
mkdir -p "$root/.gpu/bin" ../shared/data
cat > "$root/.gpu/bin/torch-model-archiver" <<'SH'
#!/bin/sh
exec python3 -c 'import sys; from model_archiver.model_packaging import generate_model_archive; sys.exit(generate_model_archive())' "$@"
SH
chmod +x "$root/.gpu/bin/torch-model-archiver"
export PATH="$root/.gpu/bin:$PATH"
# Copies, outside the checkout: a call removes the chunks the earlier calls carried, while
# ../shared stays as long as the machine does.
for chunk in "$root"/.gpu/c*/data; do
  cp -a --update=none "$chunk/." ../shared/data/
done
[ -d "$root/.gpu/c1/site" ] && { rm -rf ../shared/site; cp -a "$root/.gpu/c1/site" ../shared/site; }
export PYTHONPATH="$(readlink -f ../shared/site):$root"
# The restorer learns from the cleanest photos only: BSDS500 (JPEG ~q95) and imagen (q90).
mkdir -p ../shared/data/restorer-photos
for f in ../shared/data/photos-train/images/bsds500__* ../shared/data/photos-train/images/imagen__*; do
  [ -e "$f" ] && ln -sf "$(readlink -f "$f")" ../shared/data/restorer-photos/
done
afd() { python3 -m afdserve.cli "$@"; }
echo "chunks: $(ls -d "$root"/.gpu/c* | xargs -n1 basename | tr '\n' ' ')"
for d in imagenet-samples/images photos-train/images imagenet-val-100/images restorer-photos; do
  echo "$d: $(ls ../shared/data/$d 2>/dev/null | wc -l) files"
done
