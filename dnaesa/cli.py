"""Command line: `python -m dnaesa align|index|train|simulate|evaluate`. Parsing only, no logic.

Defaults come from `dnaesa.options`. Errors the user can fix (bad input, bad options) print one line
`dnaesa: error: ...` and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading

from dnaesa import __version__
from dnaesa.errors import DnaesaError, OptionsError
from dnaesa.options import PRESETS, IndexOptions, MapOptions

log = logging.getLogger("dnaesa")
_IDX, _MAP = IndexOptions(), MapOptions()


def _add_engine_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine")
    g.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: worker processes on this machine; ray: actors of a Ray cluster (pip install "
                        "-e '.[ray]') [local]")
    g.add_argument("--ray-address", metavar="auto|HOST:PORT",
                   help="the Ray cluster to use [a local one, started for this run]")
    g.add_argument("--ray-workers", type=_positive_int, metavar="N", help="Ray actors [-t, or all cores]")
    g.add_argument("--ray-gpus-per-worker", type=float, default=0.0, metavar="G", help="GPUs per Ray actor [0]")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and hardware")
    g.add_argument("--encoder", default="default", metavar="NAME",
                   help="encoder: default (the bundled model: 8-mer sketch + spaced-seed channel, see "
                        "MODEL.md), kmer (the training-free count sketch; kmer:k=8,dim=4096 sets its "
                        "parameters) [default]")
    g.add_argument("--model", metavar="DIR", help="a trained model directory (overrides --encoder)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the encoder and the search run; auto = cuda when present [auto]")
    g.add_argument("-t", "--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads (worker processes); more than the cores is capped [all cores]")


def _add_index_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("index")
    g.add_argument("--index", metavar="DIR", help="index directory [REF.dnaesa-index beside the reference]")
    g.add_argument("--max-read-len", type=int, metavar="N",
                   help=f"longest read the index serves wholly inside one fragment; sets the stride [{_IDX.max_read_len}]")
    g.add_argument("--fragment-len", type=int, metavar="N",
                   help=f"reference fragment length [{_IDX.fragment_len}]")
    g.add_argument("--store", "--index-kind", dest="index_kind", default=None,
                   choices=["auto", "flat", "hnsw", "int8", "int4", "tiered", "lean"],
                   help="vector store: exact float32 (flat), graph (hnsw), exact search over 1-byte (int8) or "
                        "4-bit (int4) codes, tiered (int4 plus a 256-dim coarse tier that picks the candidates; "
                        "an int4 index is upgraded in place), or lean (the coarse tier, an eighth of the int4 codes, "
                        "and exact scores computed from the reference: a quarter of tiered's bytes; a tiered index "
                        "is cut in place); auto: tiered from 1,000,000 fragments (~1 Gb), int4 "
                        "from 100,000 (~100 Mb), else flat [auto]")
    g.add_argument("--rebuild-index", action="store_true", help="rebuild the index even when it matches")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line `dnaesa: error: ...` (exit 2), not usage + error."""

    def error(self, message: str):
        command = self.prog.partition(" ")[2]
        self.exit(2, f"dnaesa: error: {command + ': ' if command else ''}{message} (see {self.prog} -h)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dnaesa", description="DNA read alignment by embedding, search and alignment.")
    parser.add_argument("--version", action="version", version=f"dnaesa {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -q after the subcommand too; SUPPRESS keeps a -q given before it
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress or summary on stderr")

    align = sub.add_parser("align", help="align reads to a reference, write SAM/BAM", parents=[quiet],
                           description="Align reads (FASTQ/FASTA, plain/gz, - for stdin) to REF (FASTA).")
    align.add_argument("reads", metavar="READS", help="reads: FASTQ or FASTA, plain or gzip; - for stdin")
    align.add_argument("more", nargs="+", metavar="[MATES] REF",
                       help="MATES (optional): mate 2 of each read of READS, same order; REF: the reference, "
                            "FASTA, plain or gzip (indexed on first use), or an index folder (all its genomes)")
    pairs = align.add_argument_group("paired-end reads")
    pairs.add_argument("--interleaved", action="store_true", help="READS alternates mate 1 and mate 2")
    pairs.add_argument("-I", "--insert-size", metavar="MEAN,SD",
                       help="insert-size distribution (FR); else estimated from the first 2,000 pairs")
    out = align.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="OUT",
                     help="out.sam; out.sam.gz (BGZF); out.bam or out.cram (sorted and indexed); a device "
                          "or pipe is written through [stdout, SAM]")
    out.add_argument("-M", dest="split_as_secondary", action="store_true",
                     help="flag the other parts of a split read secondary (256), not supplementary (2048), "
                          "for Picard-era tools (bwa's -M)")
    out.add_argument("--hard-clip", action="store_true",
                     help="hard-clip the other parts of a split read, as bwa does by default [soft, as bwa -Y]")
    out.add_argument("--read-group", metavar="RG", help="read group: an ID, or a full '@RG\\tID:x\\tSM:y' line")
    out.add_argument("--secondary", type=int, metavar="N",
                     help=f"also report up to N secondary alignments (flag 256) [{_MAP.secondary}]")
    m = align.add_argument_group("mapping")
    m.add_argument("-x", "--preset", default="sr", choices=sorted(PRESETS),
                   help="sr: BWA-MEM's scores, for reads close to the reference; divergent: cheaper "
                        "mismatches and gaps, for reads 10-20%% divergent (related strains); applied "
                        "before the other options [sr]")
    m.add_argument("-k", "--top-k", type=int, metavar="K",
                   help=f"fragments searched per read and strand [{_MAP.top_k}]")
    m.add_argument("--max-candidates", type=int, metavar="N",
                   help=f"at most N candidate windows aligned per read [{_MAP.max_candidates}]")
    m.add_argument("--rescue", type=int, metavar="K",
                   help=f"a read that no candidate places, but whose embedding score says it resembles "
                        f"some fragment, is aligned against up to {_MAP.rescue_candidates} of its K best "
                        f"hits, unpruned; 0 = off [{_MAP.rescue_top_k}]")
    m.add_argument("--candidate-ratio", type=float, metavar="F",
                   help=f"align candidates scoring at least F x the best embedding score [{_MAP.candidate_ratio}]")
    m.add_argument("-T", "--min-score", type=int, metavar="S",
                   help=f"report alignments scoring at least S, else unmapped [{_MAP.min_score}]")
    m.add_argument("--coarse-candidates", type=int, metavar="C",
                   help=f"tiered/lean store: fragments the coarse tier picks per read for exact scoring [{_MAP.coarse_candidates}]")
    m.add_argument("--prefilter-candidates", type=int, metavar="P",
                   help="tiered/lean store: of those, the P best on an eighth of each fragment's sketch are scored in full; "
                        f"0: all [{_MAP.prefilter_candidates}]")
    m.add_argument("--prefilter-ratio", type=float, metavar="F",
                   help="lean store: of those P, only the ones scoring on the eighth at least F x the read's best "
                        f"(and always the first --top-k) are scored in full from the reference [{_MAP.prefilter_ratio}]")
    m.add_argument("--wide-below", type=float, metavar="F",
                   help="tiered/lean store: a read whose best score is below F x what a read inside a fragment scores "
                        "(a divergent read) is searched again among the coarse tier's --wide-candidates best, all "
                        f"scored in full; 0: off [{_MAP.wide_below}]")
    m.add_argument("--wide-candidates", type=int, metavar="W",
                   help=f"tiered/lean store: fragments that second search scores per read [{_MAP.wide_candidates}]")
    m.add_argument("--coarse-sieve", type=int, metavar="K",
                   help="tiered/lean store: the coarse tier scores only the K fragments a read's 4-bit product-quantised "
                        f"codes pick (at least C); 0: all of them [{_MAP.coarse_sieve}]")
    m.add_argument("--seed-candidates", type=int, metavar="S",
                   help="lean and flat stores: the S fragments a read's sampled 19-mers point to are scored first, and settle the "
                        f"read when its best scores at least --seed-accept of a contained read's; 0: off [{_MAP.seed_candidates}]")
    m.add_argument("--seed-max-occ", type=int, metavar="M",
                   help=f"lean and flat stores: a read with a seed seen more than M times in the reference (a repeat) is searched "
                        f"without seeds [{_MAP.seed_max_occ}]")
    m.add_argument("--seed-frequent-share", type=float, metavar="F",
                   help="a read is searched without seeds when more than this share of its seeds is seen more than "
                        f"--seed-max-occ times (0: any one) [{_MAP.seed_frequent_share}]")
    m.add_argument("--seed-accept", type=float, metavar="F",
                   help=f"lean and flat stores: see --seed-candidates [{_MAP.seed_accept}]")
    m.add_argument("--batch-size", type=int, metavar="N",
                   help=f"reads embedded and searched together [{_MAP.batch_size}]")
    m.add_argument("--search-backend", choices=["auto", "faiss", "torch", "torch-bf16"],
                   help="exact search by FAISS or torch matrix products; auto = torch-bf16 on CPUs with "
                        "native bfloat16, faiss-gpu or torch on CUDA, else faiss [auto]")
    _add_index_args(align)
    _add_model_args(align)
    _add_engine_args(align)

    index = sub.add_parser("index", help="build (or check) the index of a reference", parents=[quiet],
                           description="Cut REF into fragments, embed them and store them in an index directory. "
                                       "Several REFs: genomes in one index, their contigs named GENOME:contig.")
    index.add_argument("ref", metavar="REF", nargs="+",
                       help="reference: FASTA, plain or gzip; several: genomes of one index (needs --index); "
                            "an index folder: its genomes")
    _add_index_args(index)
    genomes = index.add_argument_group("genomes")
    genomes.add_argument("--add", action="store_true",
                         help="add the genomes REF to the index in --index DIR, embedding only their fragments")
    genomes.add_argument("--genome", action="append", metavar="NAME",
                         help="name of a REF's genome, once per REF, in order [its file name without .fa/.gz]")
    _add_model_args(index)
    _add_engine_args(index)

    for name, module, text in (("train", "dnaesa.train", "train an encoder on reference sequence"),
                               ("simulate", "dnaesa.simulate", "simulate reads with their truth in the names"),
                               ("evaluate", "dnaesa.evaluate", "accuracy of SAM/BAM of simulated reads by MAPQ")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".", parents=[quiet])
        p.set_defaults(module=module)
        _import(module).add_arguments(p)
    return parser


def _import(module: str):
    import importlib

    return importlib.import_module(module)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _aligner(args: argparse.Namespace, preset: str = "sr", **map_options):
    """The `Aligner` of the command line: index flags the user gave (others None: the defaults,
    the preset, then these, as `dnaesa.options.resolve_options` layers them), and the engine
    (which also embeds the index when it is built)."""
    from dnaesa.pipeline import Aligner

    engine = {"engine": args.engine, "ray_address": args.ray_address, "ray_workers": args.ray_workers,
              "ray_gpus_per_worker": args.ray_gpus_per_worker}
    ref = args.ref[0] if isinstance(args.ref, list) and len(args.ref) == 1 else args.ref
    return Aligner(ref, model=args.model or args.encoder, index=args.index, device=args.device,
                   threads=args.threads, rebuild=args.rebuild_index, progress=not args.quiet, preset=preset,
                   fragment_len=args.fragment_len, max_read_len=args.max_read_len, index_kind=args.index_kind,
                   genomes=getattr(args, "genome", None), **engine, **map_options)


def _check_output_first(args: argparse.Namespace, mates: str | None) -> None:
    """Refuse an output that cannot be written before any work (a reference's index can take an
    hour to build): the checks `SamWriter` makes again when it opens, and an output that is the
    index folder itself."""
    if args.output is None:
        return
    from dnaesa.errors import OutputError
    from dnaesa.io.sam import check_target
    from dnaesa.store.index_dir import default_index_dir

    refs = args.ref if isinstance(args.ref, list) else [args.ref]
    check_target(args.output, [args.reads, mates, *refs])
    index = args.index if args.index is not None else default_index_dir(refs[0]) if len(refs) == 1 else None
    if index is not None and os.path.abspath(args.output) == os.path.abspath(index):
        raise OutputError(f"{args.output}: is the --index folder; choose another output")


def _run_align(args: argparse.Namespace, argv: list[str]) -> int:
    if len(args.more) > 2:
        raise OptionsError(f"align takes READS [MATES] REF, got {len(args.more) + 1} files")
    mates, args.ref = (None, args.more[0]) if len(args.more) == 1 else tuple(args.more)
    _check_output_first(args, mates)
    aligner = _aligner(args, args.preset, top_k=args.top_k, max_candidates=args.max_candidates,
                       candidate_ratio=args.candidate_ratio, rescue_top_k=args.rescue, min_score=args.min_score,
                       batch_size=args.batch_size, secondary=args.secondary, search_backend=args.search_backend,
                       coarse_candidates=args.coarse_candidates, prefilter_candidates=args.prefilter_candidates,
                       prefilter_ratio=args.prefilter_ratio, wide_below=args.wide_below,
                       wide_candidates=args.wide_candidates, coarse_sieve=args.coarse_sieve,
                       seed_candidates=args.seed_candidates, seed_accept=args.seed_accept,
                       seed_max_occ=args.seed_max_occ, seed_frequent_share=args.seed_frequent_share)
    summary = aligner.align_file(args.reads, args.output, read_group=args.read_group,
                                 command_line="dnaesa " + shlex.join(argv), progress=not args.quiet,
                                 mates=mates, interleaved=args.interleaved, insert_size=args.insert_size,
                                 split_as_secondary=args.split_as_secondary, hard_clip=args.hard_clip)
    log.info(summary.line())
    return 0


def _run_index(args: argparse.Namespace) -> int:
    if args.add:
        from dnaesa.pipeline import add_to_index

        if args.index is None or args.rebuild_index:
            raise OptionsError("--add needs --index DIR, the index to add the genomes to, and no --rebuild-index")
        index = add_to_index(args.index, args.ref, args.genome, model=args.model or args.encoder, device=args.device,
                             threads=args.threads, progress=not args.quiet, engine=args.engine,
                             ray_address=args.ray_address, ray_workers=args.ray_workers,
                             ray_gpus_per_worker=args.ray_gpus_per_worker, fragment_len=args.fragment_len,
                             max_read_len=args.max_read_len, index_kind=args.index_kind)
    else:
        from dnaesa.store.genomes import record_genomes

        aligner = _aligner(args)
        index = aligner.index
        record_genomes(index, aligner.reference)
    genomes = index.manifest.get("genomes") or []
    log.info("[dnaesa] index %s: %d fragments%s, encoder %s", index.directory, index.store.ntotal,
             f" in {len(genomes)} genomes ({', '.join(g['name'] for g in genomes)})" if len(genomes) > 1 else "",
             index.manifest["encoder"])
    return 0


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the output is aborted as on Ctrl-C."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _os_error_line(err: OSError) -> str:
    where = f"{err.filename}: " if getattr(err, "filename", None) else ""
    return f"{where}{err.strerror or err}"


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Errors of the user's making (dnaesa's own error classes, and what the
    operating system says: a missing folder, a full disk) print one line and exit 2; Ctrl-C and
    SIGTERM stop quietly (130, 143), leaving no output file."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr,
                        force=True)
    logging.getLogger("faiss").setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if threading.current_thread() is threading.main_thread() else None
    try:
        if args.command == "align":
            return _run_align(args, argv)
        if args.command == "index":
            return _run_index(args)
        return _import(args.module).run(args)
    except DnaesaError as err:
        print(f"dnaesa: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `dnaesa align ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:
        print(f"dnaesa: error: {_os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dnaesa: interrupted; no output written", file=sys.stderr)
        return 130
    except Terminated:
        print("dnaesa: terminated (SIGTERM); no output written", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
