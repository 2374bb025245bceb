set terminal pngcairo size 4884,1000 noenhanced font ',9'
set output 'bench/results/full-20261202-e/chart.png'
set datafile missing 'NaN'
set multiplot layout 2,1
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y 2
set yrange [0.015625:16]
set ytics (0.015625, 0.03125, 0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16)
set grid ytics
set xtics rotate by -35
set bmargin 7
set key top left horizontal
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb 'black' front
set title 'galleon time ratio vs peers (galleon cost / peer cost; below 1 = galleon faster)'
plot 'bench/results/full-20261202-e/chart-time.dat' using 2:xtic(1) title 'vs glibc', 'bench/results/full-20261202-e/chart-time.dat' using 3:xtic(1) title 'vs jemalloc', 'bench/results/full-20261202-e/chart-time.dat' using 4:xtic(1) title 'vs tcmalloc', 'bench/results/full-20261202-e/chart-time.dat' using 5:xtic(1) title 'vs mimalloc', 'bench/results/full-20261202-e/chart-time.dat' using 6:xtic(1) title 'vs galleon-secure', 'bench/results/full-20261202-e/chart-time.dat' using 7:xtic(1) title 'vs galleon-profile'
set title 'galleon peak RSS and memory-return ratios vs peers (below 1 = galleon holds less memory)'
plot 'bench/results/full-20261202-e/chart-mem.dat' using 2:xtic(1) title 'vs glibc', 'bench/results/full-20261202-e/chart-mem.dat' using 3:xtic(1) title 'vs jemalloc', 'bench/results/full-20261202-e/chart-mem.dat' using 4:xtic(1) title 'vs tcmalloc', 'bench/results/full-20261202-e/chart-mem.dat' using 5:xtic(1) title 'vs mimalloc', 'bench/results/full-20261202-e/chart-mem.dat' using 6:xtic(1) title 'vs galleon-secure', 'bench/results/full-20261202-e/chart-mem.dat' using 7:xtic(1) title 'vs galleon-profile'
unset multiplot
