# A tiny Spark job that succeeds: sums 0..999 and prints the result on stdout.
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("bpg-ok").getOrCreate()
total = spark.range(1000).selectExpr("sum(id) AS total").collect()[0]["total"]
print(f"bpg-ok sum={total}", flush=True)
spark.stop()
