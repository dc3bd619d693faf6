#!/usr/bin/env python3
"""CLI fuzzing of the vmoe binary: a few hundred malformed inputs across every subcommand.

Malformed configs (truncated, wrong types, huge numbers, inf/nan, unknown fields), `--set`
values, damaged data files (IDX, PNG, JPEG, HDF5 shards), damaged weights and checkpoints,
hostile paths (newlines, quotes, backticks, gnuplot/shell commands, non-UTF-8 bytes, very long
names) and out-of-range command-line numbers. Every valid input here is small, so a case that
is accepted runs in seconds.

A case fails on
  - a crash: the process ended by a signal (SIGSEGV, SIGFPE, SIGABRT, ...);
  - a hang: still running after --timeout seconds;
  - a raw error: exit code != 0 and stderr is not exactly one line starting with
    "vmoe: error: " (lines starting with "vmoe: warning:" may precede it), or that line is
    longer than 1000 characters (unbounded echo of input), or it is a bare library message;
  - a command run from a hostile name (a sentinel file appears).
Exit 0 is fine: the input was valid. Standard library only (python3 >= 3.8).

  test/cli/cli_fuzz.py --vmoe build/vmoe                 # all cases
  test/cli/cli_fuzz.py --vmoe build/vmoe --filter ckpt   # cases whose name contains "ckpt"
  test/cli/cli_fuzz.py --vmoe build/vmoe --list          # names only
"""

import argparse
import concurrent.futures
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_CONFIG = os.path.join(SOURCE_DIR, "configs", "experiments", "fashion_vit_ti.textproto")
MOE_CONFIG = os.path.join(SOURCE_DIR, "configs", "experiments", "fashion_vmoe_ti.textproto")

# Address-space limit of every case: a huge allocation fails fast instead of swapping.
MEMORY_LIMIT = 4 << 30

# Messages that are a library's own text, not vmoe's.
RAW_MESSAGES = re.compile(
    r"^vmoe: error: (\[rank \d+/\d+\] )?(std::\w+|basic_string|vector::|stoi|stol|stoll|stod|stof|"
    r"unordered_map::|map::at|bad_alloc|bad_optional_access|filesystem error)")


class Case:
    def __init__(self, name, args, env=None):
        self.name = name
        self.args = args
        self.env = env or {}


# ---------------------------------------------------------------------------------------------
# Small valid inputs, written by this script.


def idx_images(count, side=28, seed=1):
    rng = random.Random(seed)
    header = struct.pack(">IIII", 0x00000803, count, side, side)
    return header + bytes(rng.randrange(256) for _ in range(count * side * side))


def idx_labels(count):
    return struct.pack(">II", 0x00000801, count) + bytes(i % 10 for i in range(count))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_idx_dir(directory, train=64, test=32, images=None, labels=None):
    """Fashion-MNIST file names, uncompressed; `images` / `labels` replace the train files."""
    write(os.path.join(directory, "train-images-idx3-ubyte"),
          images if images is not None else idx_images(train))
    write(os.path.join(directory, "train-labels-idx1-ubyte"),
          labels if labels is not None else idx_labels(train))
    write(os.path.join(directory, "t10k-images-idx3-ubyte"), idx_images(test, seed=2))
    write(os.path.join(directory, "t10k-labels-idx1-ubyte"), idx_labels(test))


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xffffffff)


def png_bytes(width, height, colour_type=2, seed=3):
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(width * channels))
                    for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" +
            png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


# A 1x1 grey baseline JPEG (hand-made: standard Huffman tables, one 8x8 block: DC 0, EOB).
JPEG_1x1 = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c"
    "1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b"
    "080001000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b510"
    "0002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1"
    "f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a6364656667"
    "68696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2"
    "c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00"
    "2bffd9")


def jpeg_with_size(width, height):
    b = bytearray(JPEG_1x1)
    at = b.find(b"\xff\xc0")
    struct.pack_into(">HH", b, at + 5, height, width)
    return bytes(b)


def png_with_size(width, height):
    b = bytearray(png_bytes(8, 8))
    struct.pack_into(">II", b, 16, width, height)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xffffffff)
    return bytes(b)


def write_folder(root, files_per_class=3, image=None, name="x.png"):
    """An image-folder dataset: train/ and test/ with classes a and b of 8x8 RGB PNGs; `image`
    (bytes) replaces the first image of class a in both splits."""
    for split in ("train", "test"):
        for cls in ("a", "b"):
            for i in range(files_per_class):
                data = png_bytes(8, 8, seed=i + 10 * (cls == "b"))
                path = os.path.join(root, split, cls, "%d.png" % i)
                if image is not None and cls == "a" and i == 0:
                    path = os.path.join(root, split, cls, name)
                    data = image
                write(path, data)


# ---------------------------------------------------------------------------------------------
# Damage.


def damaged_variants(data, seed, flips=4):
    """(label, bytes): truncations and byte flips of `data`."""
    n = len(data)
    out = []
    for cut in sorted({0, 1, 8, 16, n // 4, n // 2, n - 1}):
        if 0 <= cut < n:
            out.append(("truncated%d" % cut, data[:cut]))
    rng = random.Random(seed)
    for i in range(flips):
        b = bytearray(data)
        for _ in range(1 + i * 3):
            at = rng.randrange(min(n, 4096)) if i % 2 == 0 else rng.randrange(n)
            b[at] = rng.randrange(256)
        out.append(("flipped%d" % i, bytes(b)))
    return out


# ---------------------------------------------------------------------------------------------
# Cases.

HOSTILE_NAMES = [
    "nl\nsystem(\"touch $VMOE_SENTINEL\")\n#",
    "quote'\nsystem('touch $VMOE_SENTINEL')\n#'",
    "tick`touch $VMOE_SENTINEL`",
    "semi'; system('touch $VMOE_SENTINEL'); '",
    "shell$(touch $VMOE_SENTINEL);x",
    "bytes\xff\xfe\x80\x01\x7f".encode("latin-1").decode("utf-8", "surrogateescape"),
    "long" + "x" * 300,
    "-dash",
]

BAD_NUMBERS = ["abc", "", "-1", "0", "1e309", "-1e309", "inf", "-inf", "nan", "NaN",
               "99999999999999999999", "2147483648", "-9223372036854775809",
               "9223372036854775807", "1e-320", "0x10", "1,2", "1.5", "\"", "\n", "9" * 400]

# --set paths: ints, floats, enums, strings, bools, repeated.
SET_PATHS = [
    "model.image_size", "model.patch_size", "model.hidden_size", "model.mlp_dim",
    "model.num_heads", "model.num_layers", "model.num_classes", "model.representation_size",
    "model.dropout_rate", "model.layer_norm_eps", "model.dtype", "model.classifier",
    "model.moe.num_experts", "model.moe.k", "model.moe.capacity_factor",
    "model.moe.eval_capacity_factor", "model.moe.images_per_group", "model.moe.noise_std",
    "model.moe.blocks", "model.moe.every_n", "model.moe.exchange_chunks",
    "data.batch_size", "data.eval_batch_size", "data.crop_padding", "data.mean", "data.std",
    "data.num_train_examples", "data.loader_threads", "data.prefetch_batches", "data.dir",
    "data.dataset", "data.mixup_alpha", "data.inception_area_min", "data.random_flip",
    "optimizer.learning_rate", "optimizer.b1", "optimizer.b2", "optimizer.eps",
    "optimizer.weight_decay", "optimizer.grad_clip_norm", "optimizer.kind",
    "schedule.warmup_steps", "schedule.end_learning_rate", "train.num_steps",
    "train.num_epochs", "train.seed", "train.threads", "train.log_every_steps",
    "train.eval_every_steps", "train.device", "eval.num_examples", "output.metrics_file",
    "checkpoint.every_steps", "checkpoint.keep", "checkpoint.every_minutes",
    "parallel.gradient_bucket_mb", "nosuch.field", "model", "model.", ".", "=",
]


def tiny_train(work, data_dir, extra=()):
    return (["train", "--config", BASE_CONFIG, "--workdir", work, "--set", "train.num_steps=1",
             "--set", "data.num_train_examples=64", "--set", "eval.num_examples=32",
             "--set", "model.num_layers=1", "--set", "data.batch_size=16",
             "--set", "data.eval_batch_size=16", "--set", "output.progress=NONE",
             "--set", "data.dir=" + data_dir] + list(extra))


def config_cases(root, idx_dir, rng):
    cases = []
    base = open(BASE_CONFIG, "rb").read()
    moe = open(MOE_CONFIG, "rb").read()
    variants = []
    for cut in (0, 1, 10, len(base) // 3, len(base) // 2, len(base) - 3):
        variants.append(("truncated%d" % cut, base[:cut]))
    # Numeric and enum fields with wrong values.
    for text, label in ((base, "vit"), (moe, "vmoe")):
        lines = text.decode().splitlines(keepends=True)
        fields = [i for i, l in enumerate(lines) if re.match(r"^\s*\w+:\s*[-\w.\"]+", l)]
        for i in fields:
            for value in rng.sample(BAD_NUMBERS, 3):
                if value == "\n":
                    continue
                changed = list(lines)
                changed[i] = re.sub(r":\s*.*$", ": " + value, lines[i].rstrip("\n")) + "\n"
                field = lines[i].split(":")[0].strip()
                variants.append(("%s_%s=%s" % (label, field, value[:12]), "".join(changed).encode()))
    variants += [
        ("unknown_field", base + b"\nmodel { hiden_size: 3 }\n"),
        ("unknown_top", base + b"\nnosuch { x: 1 }\n"),
        ("duplicate_message", base + b"\nmodel { hidden_size: 64 }\n"),
        ("garbage", bytes(random.Random(5).randrange(256) for _ in range(300))),
        ("non_utf8_string", base + b"\nname: \"\xff\xfe\"\n"),
        ("long_line", base + b"\nname: \"" + b"x" * 200000 + b"\"\n"),
        ("long_token", b"x" * 100000),
        ("deep_nesting", b"model { " * 5000),
        ("nul_bytes", base.replace(b"model", b"mo\x00del", 1)),
        ("empty", b""),
        ("only_comment", b"# nothing\n"),
        ("bad_enum", base.replace(b"SOFTMAX_XENT", b"NOSUCH_LOSS")),
        ("int_as_string", base.replace(b"hidden_size: 64", b"hidden_size: \"64\"")),
        ("float_for_int", base.replace(b"hidden_size: 64", b"hidden_size: 64.5")),
        ("huge_float", base.replace(b"learning_rate: 2e-3", b"learning_rate: 1e999")),
        ("moe_bad_blocks", moe + b"\nmodel { moe { blocks: 99 } }\n"),
    ]
    for label, data in variants:
        path = os.path.join(root, "configs", re.sub(r"[^\w.=-]", "_", label) + ".textproto")
        write(path, data)
        args = tiny_train(os.path.join(root, "w_config_" + re.sub(r"\W", "_", label)), idx_dir)
        args[2] = path
        cases.append(Case("config:" + label, args))
    cases.append(Case("config:missing_file", tiny_train(root + "/w_missing", idx_dir)[:2] +
                      [root + "/nowhere.textproto", "--workdir", root + "/w_missing"]))
    cases.append(Case("config:directory", ["train", "--config", root, "--workdir",
                                           root + "/w_dir"]))
    return cases


# Fields whose huge values are valid and only make a run long (a hang here would be no bug).
LONG_RUN_PATHS = {"train.num_steps", "train.num_epochs", "schedule.warmup_steps",
                  "checkpoint.every_steps", "checkpoint.every_minutes", "train.eval_every_steps",
                  "train.log_every_steps"}


def set_cases(root, idx_dir, rng):
    cases = []
    for path in SET_PATHS:
        for value in rng.sample(BAD_NUMBERS, 4):
            if path in LONG_RUN_PATHS and re.fullmatch(r"[0-9.e]+|inf|NaN|nan", value) and \
                    value not in ("0", "1e-320", "1.5", "nan", "NaN", "inf", "1e309"):
                continue
            args = tiny_train(os.path.join(root, "w_set_%s_%d" % (path, len(cases))), idx_dir,
                              ["--set", path + "=" + value])
            cases.append(Case("set:%s=%s" % (path, value[:12]), args))
    for bad in ("noequals", "=1", "model.hidden_size", "model.hidden_size==3",
                "data.dir=" + "x" * 5000, "model.moe.blocks=1,,2", "model.moe.blocks=-1",
                "model.moe.blocks=" + ",".join(["1"] * 1000)):
        cases.append(Case("set:" + bad[:30], tiny_train(root + "/w_set_misc", idx_dir,
                                                        ["--set", bad])))
    return cases


def idx_cases(root, rng):
    cases = []
    good = idx_images(64)
    variants = damaged_variants(good, 11, flips=2)
    variants += [
        ("huge_dims", struct.pack(">IIII", 0x803, 0x7fffffff, 0xffff, 0xffff) + good[16:]),
        ("huge_count", struct.pack(">IIII", 0x803, 0xffffffff, 28, 28) + good[16:]),
        ("zero_dims", struct.pack(">IIII", 0x803, 64, 0, 0)),
        ("bad_magic", b"\x00\x00\x08\x09" + good[4:]),
        ("wrong_rank", struct.pack(">IIIII", 0x804, 64, 28, 28, 1) + good[16:]),
        ("side_1", struct.pack(">IIII", 0x803, 64, 1, 1) + bytes(64)),
        ("gzip_garbage", b"\x1f\x8b\x08\x00" + bytes(100)),
    ]
    label_variants = [("labels_" + l, d) for l, d in damaged_variants(idx_labels(64), 12, 1)]
    label_variants += [("labels_count_mismatch", idx_labels(60)),
                       ("labels_out_of_range", struct.pack(">II", 0x801, 64) + bytes([200]) * 64)]
    for label, data in variants + label_variants:
        d = os.path.join(root, "idx_" + label)
        if label.startswith("labels_"):
            write_idx_dir(d, labels=data)
        else:
            write_idx_dir(d, images=data)
        cases.append(Case("idx:inspect:" + label, ["data", "inspect", d, "--kind", "idx"]))
        cases.append(Case("idx:pack:" + label, ["data", "pack", "idx", d, d + "/out.h5"]))
        cases.append(Case("idx:train:" + label, tiny_train(d + "/w", d)))
    return cases


def folder_cases(root):
    cases = []
    images = [("png_" + l, d, "x.png") for l, d in damaged_variants(png_bytes(8, 8), 21, 2)]
    images += [("png_huge", png_with_size(0x7fffffff, 0x7fffffff), "x.png"),
               ("png_wide", png_with_size(1 << 30, 1), "x.png"),
               ("png_zero", png_with_size(0, 0), "x.png"),
               ("png_grey_alpha", png_bytes(8, 8, colour_type=6), "x.png"),
               ("png_other_size", png_bytes(9, 7), "x.png")]
    images += [("jpeg_" + l, d, "x.jpg")
               for l, d in damaged_variants(jpeg_with_size(8, 8), 22, 4)]
    images += [("jpeg_ok", jpeg_with_size(8, 8), "x.jpg"), ("jpeg_1x1", JPEG_1x1, "x.jpg")]
    images += [("jpeg_huge", jpeg_with_size(65535, 65535), "x.jpg"),
               ("jpeg_zero", jpeg_with_size(0, 0), "x.jpg"),
               ("jpeg_as_png", JPEG_1x1, "x.png"), ("text_as_jpeg", b"hello", "x.jpg")]
    for label, data, name in images:
        d = os.path.join(root, "folder_" + label)
        write_folder(d, image=data, name=name)
        cases.append(Case("folder:inspect:" + label,
                          ["data", "inspect", d + "/train", "--kind", "folder"]))
        cases.append(Case("folder:pack:" + label,
                          ["data", "pack", "folder", d + "/train", d + "/out.h5"]))
    d = os.path.join(root, "folder_ok")
    write_folder(d)
    for label, extra in (("channels2", ["--channels", "2"]), ("channels-1", ["--channels", "-1"]),
                         ("size-1", ["--image-size", "-1"]), ("size_huge", ["--image-size",
                                                                             "99999999999"])):
        cases.append(Case("folder:pack:" + label,
                          ["data", "pack", "folder", d + "/train", d + "/o.h5"] + extra))
    for label, extra in (("grid0", ["--grid-side", "0"]), ("grid-1", ["--grid-side", "-1"]),
                         ("grid_huge", ["--grid-side", "2000000000"]),
                         ("grid_dir", ["--grid", d])):
        cases.append(Case("folder:inspect:" + label,
                          ["data", "inspect", d + "/train", "--kind", "folder"] + extra))
    cases.append(Case("folder:empty", ["data", "inspect", root, "--kind", "folder"]))
    return cases


def file_cases(root, shard, weights, checkpoint, moe_weights):
    """Damaged HDF5 shards, weights and checkpoints through every command that reads them."""
    cases = []
    for label, data in damaged_variants(open(shard, "rb").read(), 31, 10):
        path = os.path.join(root, "shard_" + label + ".h5")
        write(path, data)
        cases.append(Case("shard:inspect:" + label, ["data", "inspect", path]))
        cases.append(Case("shard:predict:" + label, ["predict", "--weights", weights, "--input",
                                                     path, "--output", path + ".out.h5"]))
    for label, data in damaged_variants(open(weights, "rb").read(), 32, 10):
        path = os.path.join(root, "weights_" + label + ".h5")
        write(path, data)
        cases.append(Case("weights:eval:" + label, ["eval", "--weights", path]))
        cases.append(Case("weights:predict:" + label, ["predict", "--weights", path, "--count",
                                                       "4", "--output", path + ".out.h5"]))
        cases.append(Case("weights:ckpt-ls:" + label, ["ckpt", "ls", path]))
    for label, data in damaged_variants(open(checkpoint, "rb").read(), 33, 8):
        path = os.path.join(root, "ckpt_" + label + ".h5")
        write(path, data)
        for command in ("ls", "verify", "stats"):
            cases.append(Case("ckpt:%s:%s" % (command, label), ["ckpt", command, path]))
        cases.append(Case("ckpt:diff:" + label, ["ckpt", "diff", checkpoint, path]))
        cases.append(Case("ckpt:export:" + label, ["ckpt", "export", path, path + ".w.h5"]))
    cases.append(Case("ckpt:export:bad_regex", ["ckpt", "export", checkpoint, root + "/e.h5",
                                                "--include", "(["]))
    cases.append(Case("ckpt:export:over_itself", ["ckpt", "export", checkpoint, checkpoint]))
    cases.append(Case("ckpt:ls:directory", ["ckpt", "ls", root]))
    cases.append(Case("ckpt:ls:text", ["ckpt", "ls", BASE_CONFIG]))
    cases.append(Case("eval:weights_is_config", ["eval", "--weights", BASE_CONFIG]))
    # Command-line numbers.
    out = root + "/p.h5"
    for label, extra in (("count-5", ["--count", "-5"]), ("start_huge", ["--start", "9" * 19]),
                         ("start-1", ["--start", "-1"]), ("batch0", ["--batch-size", "0"]),
                         ("batch-1", ["--batch-size", "-1"]),
                         ("batch_huge", ["--batch-size", "4000000000000"]),
                         ("count_overflow", ["--start", "5", "--count", "9223372036854775807"]),
                         ("capacity_nan", ["--capacity-factor", "nan"]),
                         ("capacity_inf", ["--capacity-factor", "inf"]),
                         ("bpr_bad", ["--bpr", "maybe"]), ("input_text", ["--input", BASE_CONFIG])):
        cases.append(Case("predict:" + label, ["predict", "--weights", moe_weights, "--count",
                                               "4", "--output", out] + extra))
    for label, extra in (("capacity-1", ["--capacity-factor", "-1"]),
                         ("capacity_nan", ["--capacity-factor", "nan"]),
                         ("capacity_huge", ["--capacity-factor", "1e300"]),
                         ("sweep_nan", ["--capacity-sweep", "nan,1"]),
                         ("sweep_empty", ["--capacity-sweep", ","]),
                         ("fewshot-1", ["--fewshot", "-1"]), ("fewshot0", ["--fewshot", "0"]),
                         ("fewshot_huge", ["--fewshot", "99999999999"]),
                         ("dense_capacity", ["--weights", weights, "--capacity-factor", "0.5"])):
        cases.append(Case("eval:" + label, ["eval", "--weights", moe_weights] + extra))
    for label, extra in (("images-1", ["--images", "-1"]), ("images_huge", ["--images", "9" * 19]),
                         ("images_empty", ["--images", ","]),
                         ("capacity_nan", ["--capacity-factor", "nan"]),
                         ("dense", ["--weights", weights])):
        cases.append(Case("routing-map:" + label, ["routing-map", "--weights", moe_weights,
                                                   "--output", root + "/m.png"] + extra))
    return cases


def hostile_cases(root, idx_dir, weights, checkpoint, moe_weights):
    cases = []
    for i, name in enumerate(HOSTILE_NAMES):
        d = os.path.join(root, "hostile%d" % i)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        label = "%d" % i
        cases.append(Case("hostile:plot_missing:" + label, ["plot", path]))
        try:  # a workdir that exists under this name (not for names too long to exist)
            os.makedirs(path + "_work", exist_ok=True)
            write(os.path.join(path + "_work", "metrics.jsonl"), b'{"step":1,"train/loss":2.0}\n')
            cases.append(Case("hostile:plot:" + label, ["plot", path + "_work"]))
        except OSError:
            pass
        cases.append(Case("hostile:predict_output:" + label, ["predict", "--weights", weights,
                                                              "--count", "2", "--output", path]))
        cases.append(Case("hostile:pack_dst:" + label, ["data", "pack", "idx", idx_dir,
                                                        path + ".h5"]))
        cases.append(Case("hostile:inspect:" + label, ["data", "inspect", path]))
        cases.append(Case("hostile:export:" + label, ["ckpt", "export", checkpoint,
                                                      path + ".w.h5"]))
        cases.append(Case("hostile:eval_workdir:" + label, ["eval", "--workdir", path]))
        cases.append(Case("hostile:config:" + label, ["train", "--config", path, "--workdir",
                                                      path + "_w"]))
        cases.append(Case("hostile:routing_map:" + label,
                          ["routing-map", "--weights", moe_weights, "--images", "0", "--output",
                           path + ".png", "--data", path + ".csv"]))
        if i < 3:
            cases.append(Case("hostile:train_workdir:" + label,
                              tiny_train(path + "_train", idx_dir)))
    very_long = os.path.join(root, *(["y" * 200] * 30))
    cases.append(Case("hostile:long_path_plot", ["plot", very_long]))
    cases.append(Case("hostile:long_path_config", ["train", "--config", very_long,
                                                   "--workdir", very_long]))
    cases.append(Case("hostile:long_component", ["predict", "--weights", weights, "--count", "2",
                                                 "--output", root + "/" + "z" * 300 + ".h5"]))
    cases.append(Case("hostile:output_is_dir", ["predict", "--weights", weights, "--count", "2",
                                                "--output", root]))
    return cases


def cli_cases():
    cases = []
    for label, args in (("no_args", []), ("unknown_command", ["nosuch"]),
                        ("unknown_option", ["train", "--nosuch"]),
                        ("missing_value", ["train", "--config"]),
                        ("long_option", ["plot", "--" + "x" * 10000]),
                        ("newline_option", ["plot", "--a\nb"]),
                        ("long_argument", ["plot", "a", "y" * 10000]),
                        ("long_choice", ["eval", "--bpr", "z" * 10000]),
                        ("ckpt_no_sub", ["ckpt"]), ("data_no_sub", ["data"]),
                        ("pack_bad_kind", ["data", "pack", "nosuch", "/tmp", "/tmp/x.h5"]),
                        ("inspect_bad_kind", ["data", "inspect", "/tmp", "--kind", "nosuch"]),
                        ("eval_nothing", ["eval"]), ("predict_nothing", ["predict", "--output",
                                                                       "/tmp/x.h5"])):
        cases.append(Case("cli:" + label, args))
    return cases


# ---------------------------------------------------------------------------------------------
# Running.


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def no_core_files():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# The memory cap of every case: an address-space limit, except for a binary built with
# AddressSanitizer (--sanitized), whose shadow memory reserves terabytes of address space; there
# the sanitizer's allocator refuses any single allocation over the limit and returns null (so
# that operator new throws as it does in production), and a process over it in RSS dies.
PREEXEC = limit_memory


def sanitized_env(env):
    mb = MEMORY_LIMIT >> 20
    options = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (options + ":" if options else "") + (
        "allocator_may_return_null=1:max_allocation_size_mb=%d:hard_rss_limit_mb=%d" % (mb, mb))


def run_case(vmoe, case, timeout, env, cwd):
    start = time.monotonic()
    full_env = dict(env)
    full_env.update(case.env)
    try:
        p = subprocess.run([vmoe] + case.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=full_env, cwd=cwd,
                           preexec_fn=PREEXEC)
    except subprocess.TimeoutExpired:
        return case, "hang", "no exit after %g s" % timeout, time.monotonic() - start
    seconds = time.monotonic() - start
    err = p.stderr.decode("utf-8", "backslashreplace")
    if p.returncode < 0:
        sig = -p.returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        return case, "crash (%s)" % name, err[-600:], seconds
    if p.returncode == 0:
        if "HDF5-DIAG" in err:
            return case, "raw library output on success", err[:600], seconds
        return case, None, "accepted", seconds
    report = case.args[:2] in (["data", "inspect"], ["ckpt", "verify"])
    if report and p.returncode == 1 and err == "" and p.stdout:
        # The checking commands print their findings on stdout and exit 1 on a fault.
        return case, None, "accepted", seconds
    lines = [l for l in err.split("\n")[:-1] if not l.startswith("vmoe: warning:")]
    if not err.endswith("\n") or len(lines) != 1 or not lines[0].startswith("vmoe: error: "):
        kind = "raw error output"
        if "terminate called" in err:
            kind = "uncaught exception"
        elif "HDF5-DIAG" in err:
            kind = "raw HDF5 output"
        elif err.strip() == "":
            kind = "exit %d without a message" % p.returncode
        return case, kind, err[:600], seconds
    if len(lines[0]) > 1000:
        return case, "unbounded echo in error line", lines[0][:300] + "...", seconds
    if RAW_MESSAGES.match(lines[0]):
        return case, "bare library message", lines[0][:600], seconds
    return case, None, "", seconds


def setup_run(vmoe, root, idx_dir, env):
    """A tiny trained dense model (weights + checkpoint), a tiny V-MoE and a packed shard."""
    def check(args, what):
        p = subprocess.run([vmoe] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, cwd=root, stdin=subprocess.DEVNULL, timeout=300)
        if p.returncode != 0:
            sys.exit("cli_fuzz: setup failed (%s): %s" % (what, p.stderr.decode(errors="replace")))
    dense = os.path.join(root, "base_dense")
    check(tiny_train(dense, idx_dir, ["--set", "train.num_steps=2",
                                      "--set", "checkpoint.every_steps=1"]), "dense training")
    moe = os.path.join(root, "base_moe")
    args = tiny_train(moe, idx_dir, ["--set", "model.moe.images_per_group=4"])
    args[2] = MOE_CONFIG
    check(args, "V-MoE training")
    shard = os.path.join(root, "shard.h5")
    check(["data", "pack", "idx", idx_dir, shard, "--split", "test"], "packing a shard")
    checkpoints = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(dense) for f in fs
                         if f.endswith(".h5") and f != "weights.h5")
    if not checkpoints:
        sys.exit("cli_fuzz: setup failed: the dense run wrote no checkpoint in " + dense)
    return (shard, os.path.join(dense, "weights.h5"), checkpoints[-1],
            os.path.join(moe, "weights.h5"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vmoe", required=True, help="the vmoe binary")
    parser.add_argument("--workdir", help="scratch folder (default: a fresh temporary one)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20, help="seconds per case")
    parser.add_argument("--budget", type=float, default=150,
                        help="seconds for all cases; cases not started by then are skipped")
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--sanitized", action="store_true",
                        help="the binary is built with AddressSanitizer (VMOE_SANITIZE=ON)")
    opts = parser.parse_args()
    vmoe = os.path.abspath(opts.vmoe)
    started = time.monotonic()
    root = opts.workdir or tempfile.mkdtemp(prefix="vmoe_cli_fuzz_")
    root = os.path.abspath(root)
    if opts.workdir:
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
    sentinel = os.path.join(root, "SENTINEL")
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "VMOE_SENTINEL": sentinel})
    for name in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "VMOE_TEST_DEVICE"):
        env.pop(name, None)
    if opts.sanitized:
        global PREEXEC
        PREEXEC = no_core_files
        sanitized_env(env)
    rng = random.Random(opts.seed)
    idx_dir = os.path.join(root, "idx_good")
    write_idx_dir(idx_dir)
    cases = []
    cases += cli_cases()
    cases += config_cases(root, idx_dir, rng)
    cases += set_cases(root, idx_dir, rng)
    cases += idx_cases(root, rng)
    cases += folder_cases(root)
    if not opts.list:
        shard, weights, checkpoint, moe_weights = setup_run(vmoe, root, idx_dir, env)
    else:
        shard = weights = checkpoint = moe_weights = os.path.join(root, "placeholder.h5")
        write(shard, b"\x89HDF\r\n\x1a\n" + bytes(100))
    cases += file_cases(root, shard, weights, checkpoint, moe_weights)
    cases += hostile_cases(root, idx_dir, weights, checkpoint, moe_weights)
    cases = [c for c in cases if opts.filter in c.name]
    if opts.list:
        for c in cases:
            print(c.name)
        print("%d cases" % len(cases))
        return 0
    print("cli_fuzz: %d cases, %d at a time, %g s each at most (setup %.1f s)" %
          (len(cases), opts.jobs, opts.timeout, time.monotonic() - started), flush=True)
    deadline = time.monotonic() + opts.budget
    failures = {}
    ran = skipped = accepted = 0
    slowest = []

    def guarded(case):
        if time.monotonic() > deadline:
            return case, "skipped", "", 0.0
        return run_case(vmoe, case, opts.timeout, env, root)

    with concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        for case, kind, detail, seconds in pool.map(guarded, cases):
            if kind == "skipped":
                skipped += 1
                continue
            ran += 1
            slowest.append((seconds, case.name))
            if opts.verbose:
                print("%-6s %5.1fs %s" % ("FAIL" if kind else "ok", seconds, case.name))
            if kind:
                failures.setdefault(kind, []).append((case, detail))
            elif detail == "accepted":
                accepted += 1
    if os.path.exists(sentinel):
        failures.setdefault("command run from a hostile name", []).append(
            (Case("(sentinel)", []), "%s exists" % sentinel))
    print("cli_fuzz: ran %d cases in %.1f s (%d accepted, exit 0), %d skipped (time budget), "
          "%d failed" % (ran, time.monotonic() - started, accepted, skipped,
                         sum(len(v) for v in failures.values())))
    slowest.sort(reverse=True)
    print("slowest: " + ", ".join("%s %.1fs" % (n, s) for s, n in slowest[:3]))
    for kind, items in sorted(failures.items(), key=lambda kv: -len(kv[1])):
        case, detail = items[0]
        print("\n%s: %d case(s), e.g. %s" % (kind, len(items), case.name))
        print("  vmoe " + " ".join(repr(a) if re.search(r"[^\w/.=,:+-]", a) else a
                                   for a in case.args)[:400])
        print("  " + detail.strip().replace("\n", "\n  ")[:600])
        others = sorted({":".join(c.name.split(":")[:2]) for c, _ in items})
        print("  categories: " + ", ".join(others[:12]))
    if not opts.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
