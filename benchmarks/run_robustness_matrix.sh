#!/bin/bash
# The honest robustness matrix of issue 10: main matrix (3 fractions), seed/alpha sweep, oracle comparison.
# Usage: bash benchmarks/run_robustness_matrix.sh [OUT_DIR]   (about 75 min on 2 cores)
cd "$(dirname "$0")/.."
D=${1:-runs/robustness-honest}; mkdir -p $D
A=sign_flip,alie,ipm,min_max,label_flip,adaptive
OPT="--attack-option sign_flip.scale=4 --attack-option ipm.epsilon=100"
echo "main start $(date)" >> $D/log
.venv/bin/deai robustness --config examples/robustness_fashion_mnist.toml --attacks $A --byzantine-fraction 0.1,0.2,0.3 $OPT --out $D/main --jobs 2 --json > $D/main.json 2>> $D/main.err
echo "main done $(date)" >> $D/log
for seed in 0 1 2; do for alpha in 0.1 0.5 1.0; do
  [ "$seed" = 0 ] && [ "$alpha" = 0.5 ] && continue
  sed -e "s/^seed = 0/seed = $seed/" -e "s/^alpha = 0.5/alpha = $alpha/" examples/robustness_fashion_mnist.toml > $D/base_s${seed}_a${alpha}.toml
  .venv/bin/deai robustness --config $D/base_s${seed}_a${alpha}.toml --attacks $A --defences recommended,root_guided,fltrust --byzantine-fraction 0.3 $OPT --out $D/sweep_s${seed}_a${alpha} --jobs 2 --json > $D/sweep_s${seed}_a${alpha}.json 2>> $D/sweep.err
  echo "sweep $seed $alpha done $(date)" >> $D/log
done; done
# the old evaluation (true attacker count and fraction, clean-run norms) at 30% and at 10%, for the before/after table
O="--attacks sign_flip,alie,ipm,min_max,label_flip --oracle $OPT --jobs 2 --json"
.venv/bin/deai robustness --config examples/robustness_fashion_mnist.toml --defences mean,median,trimmed_mean,krum,multi_krum,bulyan,geometric_median,centered_clipping,norm_bound,fltrust,foolsgold,reputation --byzantine-fraction 0.3 $O --out $D/oracle > $D/oracle.json 2>> $D/oracle.err
echo "oracle done $(date)" >> $D/log
.venv/bin/deai robustness --config examples/robustness_fashion_mnist.toml --defences trimmed_mean,krum,multi_krum,dnc,centered_clipping,norm_bound --byzantine-fraction 0.1 $O --out $D/oracle_10 > $D/oracle_10.json 2>> $D/oracle.err
echo "oracle 10% done $(date)" >> $D/log
