# The solver table's cells, shared by scripts/solver_table.sh and scripts/time_to_quality.sh
# (sourced after cd to the repository root): sizes and guidance defaults, each cell's sample count
# and its guidance flags. See solver_table.sh for what each size means.
BIN=${BUILD:-build}
OUT=${OUT:-runs/solvers}
N=${N:-1000}
N_MID=${N_MID:-2000}
DDPM_N=${DDPM_N:-2000}
NFES=${NFES:-"5 8 10 15 20 25 50"}
SOLVERS=${SOLVERS:-"ddim dpm++2m dpm++3m unipc"}
GUIDES=${GUIDES:-"none eds cfg"}
EDS_SCALE=${EDS_SCALE:-1}
CFG_SCALE=${CFG_SCALE:-1.5}
QUARTERS=${QUARTERS:-4}
T=${THREADS:-$(nproc)}
ECT=models/fashion_classifier_ect.safetensors
REF=${REF:-$BIN/fashion_test_ref.safetensors}
EVALUATOR=${EVALUATOR:-models/fashion_evaluator.safetensors}

gflags() { # guide -> ddpm-sample flags
    case $1 in
        none) echo "--guidance none" ;;
        eds) echo "--guidance entropy --classifier $ECT --scale $EDS_SCALE" ;;
        cfg) echo "--guidance cfg --cfg-scale $CFG_SCALE" ;;
    esac
}

cellsize() { # solver nfe -> samples in that cell
    if [ "$1" = ddpm ]; then echo "$DDPM_N"; elif [ "$2" = 10 ] || [ "$2" = 20 ]; then echo "$N_MID"; else echo "$N"; fi
}
