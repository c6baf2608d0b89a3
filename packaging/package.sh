#!/bin/sh
# Build the hanat .deb and .rpm packages with nfpm (a Go tool of this
# module: `go tool nfpm`, no download of a prebuilt binary).
#
#   packaging/package.sh [OUTDIR]          (make package)
#
# Environment: ARCHES (default "amd64 arm64"), FORMATS (default "deb rpm"),
# VERSION (default from git: the tag vX.Y.Z, else 0.0.0~gitYYYYMMDD.SHA),
# GO (default go). Packages land in OUTDIR (default packaging/dist), named
# hanat_<version>_<arch>.deb and hanat-<version>-1.<arch>.rpm. Prints the
# path of each package built, one per line, on stdout.
set -eu

cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${1:-packaging/dist}
ARCHES=${ARCHES:-amd64 arm64}
FORMATS=${FORMATS:-deb rpm}

if [ -z "${VERSION:-}" ]; then
	if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
		VERSION=${tag#v}
	else
		sha=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
		date=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
		VERSION="0.0.0~git${date}.${sha}"
		if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
			VERSION="${VERSION}.dirty"
		fi
	fi
fi
case "$VERSION" in
[0-9]*) ;;
*) echo "package.sh: VERSION $VERSION must start with a digit" >&2; exit 2 ;;
esac

stage=$(mktemp -d "${TMPDIR:-/tmp}/hanat-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p "$OUT" "$stage/man"
for page in packaging/man/*.8; do
	gzip -9n <"$page" >"$stage/man/$(basename "$page").gz"
done

for arch in $ARCHES; do
	case "$arch" in
	amd64|arm64) ;;
	*) echo "package.sh: unsupported architecture $arch (amd64, arm64)" >&2; exit 2 ;;
	esac
	mkdir -p "$stage/$arch"
	for cmd in hanatd hanatctl; do
		CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath \
			-ldflags "-s -w -X main.version=$VERSION" \
			-o "$stage/$arch/$cmd" "./cmd/$cmd"
	done
	for format in $FORMATS; do
		case "$format" in
		deb) target="$OUT/hanat_${VERSION}_${arch}.deb" ;;
		rpm)
			case "$arch" in amd64) rarch=x86_64 ;; arm64) rarch=aarch64 ;; esac
			target="$OUT/hanat-${VERSION}-1.${rarch}.rpm"
			;;
		*) echo "package.sh: unsupported format $format (deb, rpm)" >&2; exit 2 ;;
		esac
		HANAT_ARCH=$arch HANAT_VERSION=$VERSION HANAT_STAGE=$stage \
			"$GO" tool nfpm package --config packaging/nfpm.yaml \
			--packager "$format" --target "$target" >&2
		echo "$target"
	done
done
