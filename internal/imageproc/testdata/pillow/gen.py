#!/usr/bin/python3
"""Regenerates this folder: small images covering decoder paths that
fixtures/preprocess does not (JPEG sampling factors, colour-space markers,
restart intervals; GIF canvas rules; BMP variants; 16-bit and out-of-range
palette PNGs; WebP alpha), with the outputs of the reference stack.

Needs Debian 12's python3-pil (Pillow 9.4.0, libjpeg-turbo 2.1.5,
libwebp 1.2.4), python3-numpy and libjpeg-turbo-progs (cjpeg). The PNG
inputs named go_* are written by Go's image/png encoder (go_pngs.go, run
with `go run go_pngs.go` in this folder) before this script runs.

For every input it writes <name>.decoded.npy.gz (the pixels Image.open
gives: uint8 H×W[×C], "1" as 0/255, "I" as int32) and <name>.<variant>.npy.gz
for the eval transform at size 32 (open_clip: resize in the opened mode,
crop rounding half to even, convert("RGB"); hf: convert("RGB") first, crop
rounding down), and manifest.json with the mode and size, or Pillow's error.
"""
import gzip, io, json, os, struct, subprocess
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
IN = os.path.join(HERE, 'in')
OUT = os.path.join(HERE, 'want')
SIZE = 32
rng = np.random.default_rng(2024)


def content(w, h, c):
    y, x = np.mgrid[0:h, 0:w]
    chans = [x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), ((x + y) * 7) % 256, (x * y) % 256]
    base = np.stack(chans[:c], -1)
    noise = rng.integers(0, 256, (h, w, c))
    a = np.where(rng.random((h, w, 1)) < 0.25, noise, base).astype(np.uint8)
    a[h // 3:h // 2, w // 4:w // 2] = 255 - a[h // 3:h // 2, w // 4:w // 2]
    return a


def write(name, data):
    with open(os.path.join(IN, name), 'wb') as f:
        f.write(data)


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def jpeg_segments(b):
    i, out = 2, []
    while True:
        m = b[i + 1]
        n = struct.unpack('>H', b[i + 2:i + 4])[0]
        out.append((m, b[i:i + 2 + n]))
        i += 2 + n
        if m == 0xda:
            return out, b[i:]


def jpeg_join(segs, rest):
    return b'\xff\xd8' + b''.join(s for _, s in segs) + rest


def make_jpegs():
    for (w, h) in [(45, 37), (13, 21), (3, 5), (4, 9)]:
        a = content(w, h, 3)
        Image.fromarray(a).save('/tmp/_gen.ppm')
        for samp in ['1x2', '4x1', '4x2', '1x4', '2x4', '2x1', '2x2']:
            write(f'cj_{w}x{h}_{samp}.jpg', subprocess.run(
                ['cjpeg', '-quality', '90', '-sample', samp, '/tmp/_gen.ppm'], check=True, capture_output=True).stdout)
    a = content(45, 37, 3)
    Image.fromarray(a).save('/tmp/_gen.ppm')
    cj = lambda *args: subprocess.run(['cjpeg', *args, '/tmp/_gen.ppm'], check=True, capture_output=True).stdout
    write('cj_rgb_2x2.jpg', cj('-rgb', '-sample', '2x2'))
    write('cj_prog_restart.jpg', cj('-progressive', '-restart', '1', '-sample', '2x2'))
    write('cj_restart_2x1.jpg', cj('-restart', '2B', '-sample', '2x1'))
    write('cj_arith.jpg', cj('-arithmetic'))
    rgb = Image.fromarray(a)
    j = pil_bytes(rgb, 'JPEG', quality=90)
    segs, rest = jpeg_segments(j)
    noapp0 = [s for s in segs if s[0] != 0xe0]
    adobe0 = (0xee, b'\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00')
    write('pil_adobe0_rgb.jpg', jpeg_join([adobe0] + noapp0, rest))
    ids = []
    for m, s in noapp0:
        s = bytearray(s)
        if m == 0xc0:
            for k in range(3):
                s[10 + 3 * k] += 4
        if m == 0xda:
            for k in range(3):
                s[5 + 2 * k] += 4
        ids.append((m, bytes(s)))
    write('pil_ids567.jpg', jpeg_join(ids, rest))
    write('pil_noeoi.jpg', j[:-2])
    write('pil_prog.jpg', pil_bytes(rgb, 'JPEG', quality=85, progressive=True))
    c = Image.fromarray(content(45, 37, 4), 'CMYK')
    jc = pil_bytes(c, 'JPEG', quality=90)
    write('pil_cmyk.jpg', jc)
    segs, rest = jpeg_segments(jc)
    write('pil_cmyk_noadobe.jpg', jpeg_join([s for s in segs if s[0] != 0xee], rest))
    ycck = [(m, s[:15] + b'\x02' + s[16:] if m == 0xee else s) for m, s in segs]
    write('pil_ycck.jpg', jpeg_join(ycck, rest))


def gif_lzw(pix, lw):
    clear, eoi, width = 1 << lw, (1 << lw) + 1, lw + 1
    limit = (1 << width) - (1 << lw) - 6
    codes, n = [clear], 0
    for p in pix:
        if n >= limit:
            codes.append(clear)
            n = 0
        codes.append(int(p))
        n += 1
    codes.append(eoi)
    acc = nb = 0
    out = bytearray()
    for c in codes:
        acc |= c << nb
        nb += width
        while nb >= 8:
            out.append(acc & 255)
            acc >>= 8
            nb -= 8
    if nb:
        out.append(acc & 255)
    blocks = bytearray()
    for i in range(0, len(out), 255):
        blocks += bytes([len(out[i:i + 255])]) + out[i:i + 255]
    return bytes(blocks) + b'\x00'


def gif_table(entries):
    bits = max(1, int(np.ceil(np.log2(max(len(entries), 2)))))
    t = b''.join(bytes(e) for e in entries) + b'\x00' * (3 * ((1 << bits) - len(entries)))
    return bits, t


def gif(name, sw, sh, frame, fx, fy, gpal=None, lpal=None, trans=None, interlace=False, pre=b'', lw=8):
    fh, fw = frame.shape
    out = bytearray(b'GIF89a' + struct.pack('<HH', sw, sh))
    if gpal is not None:
        bits, t = gif_table(gpal)
        out += bytes([0x80 | (bits - 1), 0, 0]) + t
    else:
        out += b'\x00\x00\x00'
    out += pre
    if trans is not None:
        out += b'\x21\xf9\x04' + bytes([1, 0, 0, trans]) + b'\x00'
    flags, lt = (0x40 if interlace else 0), b''
    if lpal is not None:
        bits, lt = gif_table(lpal)
        flags |= 0x80 | (bits - 1)
    out += b',' + struct.pack('<HHHH', fx, fy, fw, fh) + bytes([flags]) + lt
    rows = list(range(fh))
    if interlace:
        rows = list(range(0, fh, 8)) + list(range(4, fh, 8)) + list(range(2, fh, 4)) + list(range(1, fh, 2))
    out += bytes([lw]) + gif_lzw(np.concatenate([frame[r] for r in rows]), lw) + b';'
    write(name, bytes(out))


def make_gifs():
    pal = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(16)]
    fr = rng.integers(0, 16, (10, 20)).astype(np.uint8)
    gif('gif_offset.gif', 30, 25, fr, 5, 7, gpal=pal)
    gif('gif_trans_fill.gif', 30, 25, fr, 5, 7, gpal=pal, trans=3)
    gif('gif_grow.gif', 10, 10, rng.integers(0, 16, (15, 20)).astype(np.uint8), 3, 4, gpal=pal)
    gif('gif_local.gif', 20, 10, fr, 0, 0, lpal=pal)
    gif('gif_ramp_l.gif', 20, 10, fr, 0, 0, gpal=[(i, i, i) for i in range(16)])
    gif('gif_interlaced.gif', 20, 17, rng.integers(0, 16, (17, 20)).astype(np.uint8), 0, 0, gpal=pal, interlace=True)
    gif('gif_beyond_palette.gif', 20, 10, fr, 0, 0, gpal=pal[:4])
    gif('gif_extensions.gif', 20, 10, fr, 0, 0, gpal=pal, trans=9,
        pre=b'\x21\xf9\x04\x01\x00\x00\x02\x00\x21\xfe\x03abc\x00\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00\x00\x07')
    gif('gif_no_palette.gif', 20, 10, fr, 0, 0)
    gif('gif_lzw4.gif', 40, 35, rng.integers(0, 16, (35, 40)).astype(np.uint8), 0, 0, gpal=pal, lw=4)


def bmp(name, w, h, bpp, rows, palette=None, hdr=40, compression=0, masks=None, topdown=False):
    pal = b''.join(bytes([c[2], c[1], c[0], 0]) for c in (palette or []))
    rowlen = ((w * bpp + 31) // 32) * 4
    data = b''.join(r + b'\x00' * (rowlen - len(r)) for r in (rows if topdown else rows[::-1]))
    info = struct.pack('<IiiHHIIiiII', hdr, w, -h if topdown else h, 1, bpp, compression, len(data),
                       2835, 2835, len(palette or []), 0)
    if hdr > 40:
        info += struct.pack('<IIII', *(masks or (0, 0, 0, 0))) + b'\x00' * (hdr - 56)
    off = 14 + hdr + len(pal)
    write(name, b'BM' + struct.pack('<IHHI', off + len(data), 0, 0, off) + info + pal + data)


def make_bmps():
    w, h = 37, 23
    rgb = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    bmp('bmp_topdown.bmp', w, h, 24, [r[:, ::-1].tobytes() for r in rgb], topdown=True)
    bgra = rng.integers(0, 256, (h, w, 4)).astype(np.uint8)
    bmp('bmp_32_rgb_v5.bmp', w, h, 32, [r.tobytes() for r in bgra], hdr=124)
    bmp('bmp_32_bitfields_v4.bmp', w, h, 32, [r.tobytes() for r in bgra], hdr=108, compression=3,
        masks=(0xff0000, 0xff00, 0xff, 0xff000000))
    pal = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(16)]
    idx4 = rng.integers(0, 16, (h, w))
    bmp('bmp_4bit.bmp', w, h, 4, [bytes((int(r[i]) << 4) | int(r[i + 1]) if i + 1 < w else int(r[i]) << 4
                                        for i in range(0, w, 2)) for r in idx4], palette=pal)
    idx8 = rng.integers(0, 100, (h, w)).astype(np.uint8)
    bmp('bmp_8_grey_ramp.bmp', w, h, 8, [r.tobytes() for r in idx8], palette=[(i, i, i) for i in range(100)])
    bmp('bmp_8_colour.bmp', w, h, 8, [r.tobytes() for r in idx8],
        palette=[tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(100)])
    idx1 = rng.integers(0, 2, (h, w))
    pack1 = lambda r: np.packbits(r.astype(np.uint8)).tobytes()
    bmp('bmp_1_bw.bmp', w, h, 1, [pack1(r) for r in idx1], palette=[(0, 0, 0), (255, 255, 255)])
    bmp('bmp_1_colour.bmp', w, h, 1, [pack1(r) for r in idx1], palette=[(200, 10, 10), (5, 5, 250)])


def make_pngs_webps():
    for (w, h) in [(23, 41), (41, 23)]:
        rgb = Image.fromarray(content(w, h, 3))
        rgba = Image.fromarray(content(w, h, 4), 'RGBA')
        write(f'pil_{w}x{h}_la.png', pil_bytes(Image.fromarray(content(w, h, 2), 'LA'), 'PNG'))
        write(f'pil_{w}x{h}_1.png', pil_bytes(rgb.convert('1'), 'PNG'))
        write(f'pil_{w}x{h}_p2bit.png', pil_bytes(rgb.convert('P', palette=Image.ADAPTIVE, colors=4), 'PNG', bits=2))
        write(f'pil_{w}x{h}_q60.webp', pil_bytes(rgb, 'WEBP', quality=60))
        write(f'pil_{w}x{h}_rgba_q60.webp', pil_bytes(rgba, 'WEBP', quality=60))
        write(f'pil_{w}x{h}_rgba_lossless.webp', pil_bytes(rgba, 'WEBP', lossless=True))


def expect():
    man = []
    for name in sorted(os.listdir(IN)):
        entry = {'file': name}
        try:
            im = Image.open(os.path.join(IN, name))
            im.load()
        except Exception as e:  # noqa: BLE001 - recorded in the manifest
            entry['pil_error'] = f'{type(e).__name__}: {e}'
            man.append(entry)
            continue
        entry.update(mode=im.mode, width=im.size[0], height=im.size[1])
        a = np.asarray(im)
        if im.mode == '1':
            a = a.astype(np.uint8) * 255
        save_npy(f'{name}.decoded', a)
        for variant in ('open_clip', 'hf'):
            try:
                save_npy(f'{name}.{variant}', transform(im, variant == 'hf'))
            except Exception as e:  # noqa: BLE001
                entry[f'{variant}_error'] = f'{type(e).__name__}: {e}'
        man.append(entry)
    with open(os.path.join(HERE, 'manifest.json'), 'w') as f:
        json.dump({'size': SIZE, 'pillow': Image.__version__, 'images': man}, f, indent=1)


def transform(im, hf):
    if hf:
        im = im.convert('RGB')
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    nl = int(SIZE * long / short)
    nw, nh = (SIZE, nl) if w <= h else (nl, SIZE)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.BICUBIC)
    if hf:
        left, top = (nw - SIZE) // 2, (nh - SIZE) // 2
    else:
        left, top = int(round((nw - SIZE) / 2.0)), int(round((nh - SIZE) / 2.0))
    return np.asarray(im.crop((left, top, left + SIZE, top + SIZE)).convert('RGB'))


def save_npy(name, a):
    b = io.BytesIO()
    np.save(b, np.ascontiguousarray(a))
    with gzip.GzipFile(os.path.join(OUT, name + '.npy.gz'), 'wb', mtime=0) as f:
        f.write(b.getvalue())


if __name__ == '__main__':
    os.makedirs(IN, exist_ok=True)
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    for f in os.listdir(IN):
        if not f.startswith('go_'):
            os.remove(os.path.join(IN, f))
    make_jpegs()
    make_gifs()
    make_bmps()
    make_pngs_webps()
    expect()
