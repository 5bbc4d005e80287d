"""Benchmark driver: Spark MLlib feature prep and random-forest regression.

Called by the Rust benchmark harness, which parses the LAST line of stdout as
JSON. Spark's own logging goes to stderr (level ERROR). One mode per call:

  prep:  python spark_forest.py --mode prep --input diamonds.csv --out DIR
         [--label price --categorical cut,color,clarity --max-bins 64
          --seed 42]
    Times ("prep_s") reading the CSV with an explicit schema, a Pipeline of
    StringIndexer -> OneHotEncoder -> Imputer(mean) -> QuantileDiscretizer ->
    VectorAssembler -> StandardScaler -> VectorAssembler("features") fitted on
    an 80/20 randomSplit's train part, writing the transformed train part as
    Parquet to DIR and materialising (noop write + count) the test part.

  train: python spark_forest.py --mode train --train TRAIN_DIR --test TEST_DIR
         [--trees 50 --max-depth 10 --max-bins 64 --seed 42
          --feature-subset all]
    Times ("train_s") reading the Parquet train set, StringIndexer on the
    categoricals, VectorAssembler and RandomForestRegressor.fit, then
    ("predict_s") transforming the test set and computing R^2 and RMSE.

Both modes report "session_start_s" (SparkSession creation) separately.
Options: --master (default local[2]); --no-cache disables caching the input
DataFrame (by default it is cached, as Spark ML pipelines usually are).
"""
import argparse
import csv
import json
import os
import re
import sys
import time

# Values Spark accepts for featureSubsetStrategy: a name, a count n >= 1 or
# a fraction in (0, 1].
SUBSETS = re.compile(
    r"^(auto|all|onethird|sqrt|log2|[1-9]\d*|0?\.\d*[1-9]\d*|1\.0*)$")


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text}")
    return value


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["prep", "train"], required=True)
    p.add_argument("--input", help="prep: CSV file with a header")
    p.add_argument("--out", help="prep: output folder for the Parquet")
    p.add_argument("--train", help="train: Parquet folder of training rows")
    p.add_argument("--test", help="train: Parquet folder of test rows")
    p.add_argument("--runs", type=positive_int, default=1,
                   help="prep: run the preparation this many times")
    p.add_argument("--label", default="price")
    p.add_argument("--categorical", default="cut,color,clarity")
    p.add_argument("--numeric", default="",
                   help="numeric feature columns (default: every column that "
                        "is neither categorical nor the label)")
    p.add_argument("--trees", type=positive_int, default=50)
    p.add_argument("--max-depth", type=positive_int, default=10)
    p.add_argument("--max-bins", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--feature-subset", default="all")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--no-cache", action="store_true")
    args = p.parse_args()
    needed = ["input", "out"] if args.mode == "prep" else ["train", "test"]
    missing = ["--" + n for n in needed if not getattr(args, n)]
    if missing:
        p.error(f"--mode {args.mode} requires {', '.join(missing)}")
    if args.mode == "prep" and not os.path.isfile(args.input):
        p.error(f"--input is not a file: {args.input}")
    for path in (args.train, args.test) if args.mode == "train" else ():
        if not os.path.isdir(path):
            p.error(f"not a Parquet folder: {path}")
    if not SUBSETS.match(args.feature_subset):
        p.error(f"bad --feature-subset: {args.feature_subset}")
    if args.max_bins < 2:
        p.error("--max-bins must be at least 2")
    args.cats = [c for c in args.categorical.split(",") if c]
    args.nums = [c for c in args.numeric.split(",") if c]
    return args


def columns(args, names):
    """Split `names` into categorical and numeric feature columns."""
    absent = [c for c in [args.label] + args.cats + args.nums
              if c not in names]
    if absent:
        sys.exit(f"error: column(s) not in the data: {', '.join(absent)}")
    if args.nums:
        return args.nums
    return [c for c in names if c not in args.cats and c != args.label]


def prep(spark, args, out):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import (Imputer, OneHotEncoder,
                                    QuantileDiscretizer, StandardScaler,
                                    StringIndexer, VectorAssembler)
    from pyspark.sql.types import (DoubleType, StringType, StructField,
                                   StructType)

    with open(args.input, newline="") as f:
        names = next(csv.reader(f))
    nums = columns(args, names)
    schema = StructType([StructField(c, StringType() if c in args.cats
                                     else DoubleType()) for c in names])
    start = time.perf_counter()
    df = spark.read.csv(args.input, header=True, schema=schema)
    if not args.no_cache:
        df = df.cache()
    out["rows"] = df.count()
    train, test = df.randomSplit([0.8, 0.2], seed=args.seed)
    idx = [c + "_idx" for c in args.cats]
    ohe = [c + "_ohe" for c in args.cats]
    imp = [c + "_imp" for c in nums]
    stages = [
        StringIndexer(inputCols=args.cats, outputCols=idx,
                      stringOrderType="frequencyDesc", handleInvalid="keep"),
        OneHotEncoder(inputCols=idx, outputCols=ohe),
        Imputer(inputCols=nums, outputCols=imp, strategy="mean"),
        QuantileDiscretizer(inputCols=imp,
                            outputCols=[c + "_bin" for c in nums],
                            numBuckets=args.max_bins, relativeError=0.001),
        VectorAssembler(inputCols=imp, outputCol="numeric"),
        StandardScaler(inputCol="numeric", outputCol="scaled",
                       withMean=True, withStd=True),
        VectorAssembler(inputCols=ohe + ["scaled"], outputCol="features"),
    ]
    model = Pipeline(stages=stages).fit(train)
    model.transform(train).write.mode("overwrite").parquet(args.out)
    test_out = model.transform(test)
    test_out.write.format("noop").mode("overwrite").save()
    out["test_rows"] = test_out.count()
    out["prep_s"] = time.perf_counter() - start


def train(spark, args, out):
    from pyspark.ml import PipelineModel
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import StringIndexer, VectorAssembler
    from pyspark.ml.regression import RandomForestRegressor
    from pyspark.sql.functions import col

    def load(path):
        df = spark.read.parquet(path)
        nums = columns(args, df.columns)
        return df.select(*args.cats, *[col(c).cast("double").alias(c)
                                       for c in nums + [args.label]]), nums

    start = time.perf_counter()
    df, nums = load(args.train)
    if not args.no_cache:
        df = df.cache()
    out["train_rows"] = df.count()
    idx = [c + "_idx" for c in args.cats]
    indexer = StringIndexer(inputCols=args.cats, outputCols=idx,
                            handleInvalid="keep").fit(df)
    for name, labels in zip(args.cats, indexer.labelsArray):
        if len(labels) + 1 > args.max_bins:  # +1: the "keep" unknown bucket
            sys.exit(f"error: {name} has {len(labels)} categories (+1 unknown)"
                     f", more than --max-bins {args.max_bins}")
    assembler = VectorAssembler(inputCols=idx + nums, outputCol="features")
    forest = RandomForestRegressor(
        labelCol=args.label, featuresCol="features", numTrees=args.trees,
        maxDepth=args.max_depth, maxBins=args.max_bins,
        featureSubsetStrategy=args.feature_subset, seed=args.seed,
        subsamplingRate=1.0, bootstrap=True)
    fitted = forest.fit(assembler.transform(indexer.transform(df)))
    out["train_s"] = time.perf_counter() - start

    model = PipelineModel(stages=[indexer, assembler, fitted])
    start = time.perf_counter()
    test, _ = load(args.test)
    pred = model.transform(test)
    if not args.no_cache:
        pred = pred.cache()
    out["test_rows"] = pred.count()
    for metric in ("r2", "rmse"):
        out[metric] = RegressionEvaluator(labelCol=args.label,
                                          metricName=metric).evaluate(pred)
    out["predict_s"] = time.perf_counter() - start


def main():
    args = parse_args()
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    start = time.perf_counter()
    spark = (SparkSession.builder.master(args.master)
             .appName(f"spark_forest_{args.mode}")
             .config("spark.driver.memory", "4g")
             .config("spark.sql.shuffle.partitions", "4")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.log.level", "ERROR")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    out = {"mode": args.mode, "master": args.master,
           "spark_version": spark.version,
           "session_start_s": time.perf_counter() - start}
    try:
        if args.mode == "prep":
            # --runs N: the whole preparation N times in one session (the harness takes
            # the median after the first), each from an empty cache.
            times = []
            for _ in range(args.runs):
                spark.catalog.clearCache()
                prep(spark, args, out)
                times.append(out["prep_s"])
            out["prep_runs_s"] = times
        else:
            train(spark, args, out)
    finally:
        spark.stop()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
