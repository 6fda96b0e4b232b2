# A tiny Spark job that fails in the driver after starting Spark.
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("bpg-fail").getOrCreate()
rows = spark.range(0).count()
if rows == 0:
    raise RuntimeError("bpg-fail: the input table is empty")
